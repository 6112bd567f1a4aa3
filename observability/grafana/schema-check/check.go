package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Problem is one thing wrong with a dashboard: where (a JSON path such as
// "$.panels[3].gridPos.h") and what.
type Problem struct {
	Path string
	What string
}

// Check runs every check on one dashboard's JSON and returns the problems in path order.
func Check(raw []byte) []Problem {
	problems := strictProblems(raw)

	// The object to validate and round-trip comes from the SDK's lenient decoder: its strict
	// decoder returns an empty error list as a non-nil error from every nested type, and so
	// drops, on success, every panel, every plugin's options and every target it decoded.
	var board dashboard.Dashboard
	if err := json.Unmarshal(raw, &board); err != nil {
		if len(problems) == 0 {
			problems = append(problems, Problem{Path: "$", What: "cannot decode: " + err.Error()})
		}
		return sorted(problems)
	}

	problems = append(problems, buildProblems(board.Validate())...)
	problems = append(problems, pluginProblems(board)...)
	problems = append(problems, withoutPaths(roundTripProblems(raw, board), pathsOf(problems))...)
	return sorted(problems)
}

func strictProblems(raw []byte) []Problem {
	var board dashboard.Dashboard
	return buildProblems(board.UnmarshalJSONStrict(raw))
}

// buildProblems turns the SDK's error list into problems; an empty list is success.
func buildProblems(err error) []Problem {
	if err == nil {
		return nil
	}
	var buildErrs cog.BuildErrors
	if !errors.As(err, &buildErrs) {
		return []Problem{{Path: "$", What: err.Error()}}
	}
	problems := make([]Problem, 0, len(buildErrs))
	for _, buildErr := range buildErrs {
		problems = append(problems, sdkProblem(buildErr.Path, buildErr.Message))
	}
	return problems
}

var unexpectedField = regexp.MustCompile(`^unexpected field '(.*)'$`)

// sdkProblem rewrites the SDK's error path as a JSON path. The SDK puts Go type names in its
// paths ("panels[1].Panel.gridPos.w"), and reports an unknown field with the type's name where
// the field's name belongs ("panels[1].Panel: unexpected field 'tittle'"); these become
// "$.panels[1].gridPos.w" and "$.panels[1].tittle: unknown field". JSON keys in Grafana's schema
// start with a lower-case letter, Go type names with an upper-case one.
func sdkProblem(path, message string) Problem {
	var keys []string
	for _, segment := range strings.Split(path, ".") {
		if segment != "" && !unicode.IsUpper([]rune(segment)[0]) {
			keys = append(keys, segment)
		}
	}
	if match := unexpectedField.FindStringSubmatch(message); match != nil {
		return Problem{Path: jsonPath(append(keys, match[1])), What: "unknown field"}
	}
	return Problem{Path: jsonPath(keys), What: message}
}

func jsonPath(keys []string) string {
	return strings.Join(append([]string{"$"}, keys...), ".")
}

// pluginProblems reports panels and targets the SDK decoded as untyped maps: their content
// escaped every other check.
func pluginProblems(board dashboard.Dashboard) []Problem {
	var problems []Problem
	for i, item := range board.Panels {
		path := fmt.Sprintf("$.panels[%d]", i)
		switch {
		case item.RowPanel != nil:
			for j, panel := range item.RowPanel.Panels {
				problems = append(problems, panelProblems(panel, fmt.Sprintf("%s.panels[%d]", path, j))...)
			}
		case item.Panel != nil:
			problems = append(problems, panelProblems(*item.Panel, path)...)
		}
	}
	return problems
}

func panelProblems(panel dashboard.Panel, path string) []Problem {
	var problems []Problem
	plugin, found := cog.ConfigForPanelcfgVariant(panel.Type)
	if !found {
		problems = append(problems, Problem{Path: path + ".type",
			What: fmt.Sprintf("panel type %q has no plugin in the SDK: its options and fieldConfig.defaults.custom go unchecked", panel.Type)})
	} else {
		if panel.Options != nil {
			problems = append(problems, typeProblems(path+".options", panel.Options, plugin.OptionsUnmarshaler, panel.Type)...)
		}
		if panel.FieldConfig != nil && panel.FieldConfig.Defaults.Custom != nil {
			problems = append(problems, typeProblems(path+".fieldConfig.defaults.custom",
				panel.FieldConfig.Defaults.Custom, plugin.FieldConfigUnmarshaler, panel.Type)...)
		}
	}
	for j, target := range panel.Targets {
		if _, unknown := target.(variants.UnknownDataquery); unknown {
			problems = append(problems, Problem{Path: fmt.Sprintf("%s.targets[%d]", path, j),
				What: "no query type: neither the target's nor the panel's datasource names a type the SDK knows, so its fields go unchecked"})
		}
	}
	return problems
}

// typeProblems compares a decoded value's Go type with the one the plugin's own decoder makes.
func typeProblems(path string, decoded any, unmarshal func([]byte) (any, error), panelType string) []Problem {
	if unmarshal == nil {
		return nil
	}
	expected, err := unmarshal([]byte("{}"))
	if err != nil {
		return []Problem{{Path: path, What: "the " + panelType + " plugin cannot decode {}: " + err.Error()}}
	}
	if reflect.TypeOf(decoded) != reflect.TypeOf(expected) {
		return []Problem{{Path: path, What: fmt.Sprintf("decoded as %T, not as the %s plugin's %T", decoded, panelType, expected)}}
	}
	return nil
}

// roundTripProblems reports every key and value of the input that the decoded dashboard,
// marshalled again, does not give back.
func roundTripProblems(raw []byte, board dashboard.Dashboard) []Problem {
	out, err := json.Marshal(board)
	if err != nil {
		return []Problem{{Path: "$", What: "cannot marshal the decoded dashboard: " + err.Error()}}
	}
	input, err := decodeGeneric(raw)
	if err != nil {
		return []Problem{{Path: "$", What: "cannot decode: " + err.Error()}}
	}
	output, err := decodeGeneric(out)
	if err != nil {
		return []Problem{{Path: "$", What: "cannot decode the marshalled dashboard: " + err.Error()}}
	}
	return compare("$", input, output)
}

func decodeGeneric(raw []byte) (any, error) {
	decoder := json.NewDecoder(strings.NewReader(string(raw)))
	decoder.UseNumber()
	var value any
	err := decoder.Decode(&value)
	return value, err
}

func compare(path string, input, output any) []Problem {
	switch in := input.(type) {
	case map[string]any:
		out, ok := output.(map[string]any)
		if !ok {
			return []Problem{changed(path, input, output)}
		}
		var problems []Problem
		for _, key := range sortedKeys(in) {
			value, present := out[key]
			switch {
			case !present && isEmpty(in[key]):
				// The SDK omits empty lists and objects (omitempty); to Grafana null, [], {} and
				// absent mean the same.
			case !present:
				problems = append(problems, Problem{Path: path + "." + key, What: "lost in the round trip: the SDK has no such field"})
			default:
				problems = append(problems, compare(path+"."+key, in[key], value)...)
			}
		}
		return problems
	case []any:
		out, ok := output.([]any)
		if !ok {
			return []Problem{changed(path, input, output)}
		}
		var problems []Problem
		if len(in) != len(out) {
			problems = append(problems, Problem{Path: path,
				What: fmt.Sprintf("%d items came back as %d in the round trip", len(in), len(out))})
		}
		for i := 0; i < len(in) && i < len(out); i++ {
			problems = append(problems, compare(fmt.Sprintf("%s[%d]", path, i), in[i], out[i])...)
		}
		return problems
	case json.Number:
		out, ok := output.(json.Number)
		if !ok || !sameNumber(in, out) {
			return []Problem{changed(path, input, output)}
		}
		return nil
	default:
		if input != output {
			return []Problem{changed(path, input, output)}
		}
		return nil
	}
}

func isEmpty(value any) bool {
	switch v := value.(type) {
	case nil:
		return true
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

func sameNumber(a, b json.Number) bool {
	x, errA := a.Float64()
	y, errB := b.Float64()
	return errA == nil && errB == nil && x == y
}

func changed(path string, input, output any) Problem {
	return Problem{Path: path, What: fmt.Sprintf("changed in the round trip: %s became %s", compact(input), compact(output))}
}

func compact(value any) string {
	text, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprint(value)
	}
	if len(text) > 80 {
		return string(text[:77]) + "..."
	}
	return string(text)
}

func sortedKeys(object map[string]any) []string {
	keys := make([]string, 0, len(object))
	for key := range object {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

func pathsOf(problems []Problem) map[string]bool {
	paths := map[string]bool{}
	for _, problem := range problems {
		paths[problem.Path] = true
	}
	return paths
}

// withoutPaths drops the round trip's report of a path an earlier check already named
// (an unknown field, a panel without a type).
func withoutPaths(problems []Problem, paths map[string]bool) []Problem {
	kept := problems[:0]
	for _, problem := range problems {
		if !paths[problem.Path] {
			kept = append(kept, problem)
		}
	}
	return kept
}

var arrayIndex = regexp.MustCompile(`\[(\d+)\]`)

// sorted orders problems by path, array indices compared as numbers (panels[2] before
// panels[10]); problems at one path keep the order the checks found them in.
func sorted(problems []Problem) []Problem {
	key := func(path string) string {
		return arrayIndex.ReplaceAllStringFunc(path, func(index string) string {
			number, _ := strconv.Atoi(index[1 : len(index)-1])
			return fmt.Sprintf("[%010d]", number)
		})
	}
	sort.SliceStable(problems, func(i, j int) bool { return key(problems[i].Path) < key(problems[j].Path) })
	return problems
}
