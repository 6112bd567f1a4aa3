#!/usr/bin/env bash
# Builds the Grafana dashboard schema checker (main.go, check.go) and prints its path.
#
# Usage:
#   observability/grafana/schema-check/build.sh
#   "$(observability/grafana/schema-check/build.sh | tail -n1)" observability/grafana/dashboards/*.json
#
# The last line of stdout is the binary's absolute path; progress goes to stderr. The binary is
# cached under a directory named by the sha256 of go.mod, go.sum and the *.go files (see
# ../../cached-build.sh), so a second run only hashes them, and any edit builds afresh. Measured on 2 cores: 80-90 s
# (50 s of CPU, 300 MB resident) with empty Go caches, which then hold 24 MB of module and 132 MB
# of build cache (the SDK's dashboard and plugin packages are large generated code); 1-2 s after
# an edit with warm caches; 0.01 s when cached. The binary is 14 MB.
#
# Environment:
#   INFERWATCH_SCHEMA_CHECK_CACHE  cache root, e.g. /var/cache/grafana-schema-check
#                                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/grafana-schema-check)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../cached-build.sh"
cache_root="${INFERWATCH_SCHEMA_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/grafana-schema-check}"

# Hash names and contents together, in a fixed order, so a renamed file also builds afresh.
hash=$(cd "$here" && sha256sum go.mod go.sum $(LC_ALL=C ls -- *.go) | sha256sum | cut -d' ' -f1)
build_step() {
  (cd "$here" && go build -trimpath -o "$1/schema-check" .)
}

cached_build "$cache_root" "$hash" schema-check build_step "building the Grafana schema checker from $here"
