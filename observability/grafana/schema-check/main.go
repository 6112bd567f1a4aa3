// Command schema-check checks Grafana dashboard JSON files against the schema of
// github.com/grafana/grafana-foundation-sdk/go, the Go flavour of Grafana's own schema.
//
// Usage:
//
//	schema-check FILE...
//	schema-check observability/grafana/dashboards/*.json
//
// Each file goes through four checks:
//
//  1. strict decoding (Dashboard.UnmarshalJSONStrict): unknown fields, wrong types and
//     missing required fields, down into each panel's type-specific options,
//     fieldConfig.defaults.custom and Prometheus targets;
//  2. Validate(): the schema's constraints (gridPos.w <= 24, h > 0, ...);
//  3. plugin types: a panel of a type the SDK knows (timeseries, stat, ...) is decoded with
//     that plugin's Go types, a row as a row, every target as a known query type; anything
//     else would be an untyped map the checks above never look into;
//  4. round trip: the decoded dashboard, marshalled again, holds every key and value of the
//     input. A key the SDK has no field for is lost there (fieldConfig.defaults and overrides
//     are decoded leniently even in strict mode, so this is the only check that catches a
//     typo there). A key whose value is null, [] or {} may be dropped: the SDK omits empty
//     values, and Grafana reads them as absent.
//
// Output: one line per problem on stdout, "FILE: JSON-PATH: what", e.g.
//
//	dash.json: $.panels[1].tittle: unknown field
//	dash.json: $.panels[1].gridPos.h: json: cannot unmarshal string into Go value of type uint32
//	dash.json: $.panels[1].options.wideLayout: required field is missing from input
//
// and a count on stderr. Exit status: 0 no problem, 1 problems, 2 usage error.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
)

func main() {
	files := os.Args[1:]
	if len(files) == 0 || files[0] == "-h" || files[0] == "--help" {
		fmt.Fprintf(os.Stderr, "usage: %s DASHBOARD.json...\n", filepath.Base(os.Args[0]))
		os.Exit(2)
	}

	// The panel and query type registry: without it options, fieldConfig.defaults.custom and
	// targets decode to untyped maps and are not checked at all.
	plugins.RegisterDefaultPlugins()

	total := 0
	for _, file := range files {
		for _, problem := range checkFile(file) {
			fmt.Printf("%s: %s: %s\n", file, problem.Path, problem.What)
			total++
		}
	}
	if total > 0 {
		fmt.Fprintf(os.Stderr, "schema-check: %d problem(s) in %d file(s)\n", total, len(files))
		os.Exit(1)
	}
}

func checkFile(file string) []Problem {
	raw, err := os.ReadFile(file)
	if err != nil {
		return []Problem{{Path: "$", What: err.Error()}}
	}
	return Check(raw)
}
