#!/usr/bin/env bash
# Builds the Grafana dashboard schema checker (main.go, check.go) and prints its path.
#
# Usage:
#   observability/grafana/schema-check/build.sh
#   "$(observability/grafana/schema-check/build.sh | tail -n1)" observability/grafana/dashboards/*.json
#
# The last line of stdout is the binary's absolute path; progress goes to stderr. The binary is
# cached under a directory named by the sha256 of go.mod, go.sum and the *.go files, so a second
# run only hashes them, and any edit builds afresh. Go's own module and build caches (GOMODCACHE,
# GOCACHE, GOFLAGS as the environment sets them) are left alone. Measured on 2 cores: 80-90 s
# (50 s of CPU, 300 MB resident) with empty Go caches, which then hold 24 MB of module and 132 MB
# of build cache (the SDK's dashboard and plugin packages are large generated code); 1-2 s after
# an edit with warm caches; 0.01 s when cached. The binary is 14 MB.
#
# Environment:
#   INFERWATCH_SCHEMA_CHECK_CACHE  cache root, e.g. /var/cache/grafana-schema-check
#                                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/grafana-schema-check)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root="${INFERWATCH_SCHEMA_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/grafana-schema-check}"

# Hash names and contents together, in a fixed order, so a renamed file also builds afresh.
hash=$(cd "$here" && sha256sum go.mod go.sum $(LC_ALL=C ls -- *.go) | sha256sum | cut -d' ' -f1)
build_dir="$cache_root/$hash"
binary="$build_dir/schema-check"

mkdir -p "$cache_root"
# Concurrent callers (parallel test workers) wait for one build instead of racing it.
exec 9>"$cache_root/.lock"
flock 9

if [[ ! -x "$binary" ]]; then
  # Build beside the final directory and rename at the end: an interrupted build never leaves
  # a directory that a later run would take for finished.
  staging=$(mktemp -d "$cache_root/.build-XXXXXX")
  chmod 755 "$staging"
  trap 'rm -rf "$staging"' EXIT
  echo "build.sh: building the Grafana schema checker from $here in $staging" >&2
  start=$SECONDS
  (cd "$here" && go build -trimpath -o "$staging/schema-check" .) >&2
  rm -rf "$build_dir"
  mv "$staging" "$build_dir"
  trap - EXIT
  echo "build.sh: built in $((SECONDS - start)) s" >&2
fi

echo "$binary"
