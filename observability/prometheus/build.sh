#!/usr/bin/env bash
# Builds Prometheus and promtool from their Go module and prints the directory holding both.
#
# Usage:
#   observability/prometheus/build.sh
#   "$(observability/prometheus/build.sh | tail -n1)/prometheus" --version
#
# Prometheus 3.16.0 is the Go module github.com/prometheus/prometheus at v0.316.0 (3.x's
# modules are tagged v0.3MM.P); `go install` builds it without a replace directive, as
# Prometheus's release builds do (see ../cached-build.sh: static, stamped, stripped). The web UI's
# assets are not in the module (they are built with npm in its repository), so /query shows a
# placeholder; the API, the console templates and everything else work.
#
# The last line of stdout is the directory of the two binaries; progress goes to stderr. They are
# cached under a directory named by the sha256 of the build's recipe (the module, its version and
# hash, the commands), so a second run only hashes that, and a version change builds afresh. Measured on 2 cores on 2026-12-06:
# see docs/development.md (about 8 minutes cold).
#
# Environment:
#   INFERWATCH_PROMETHEUS_CACHE  cache root, e.g. /var/cache/prometheus
#                                (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/prometheus)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../cached-build.sh"

module=github.com/prometheus/prometheus
module_version=v0.316.0
version=3.16.0
export MODULE_SUM="h1:f1GRFerhTMKQma+awCoC9T820ecWeGSdF+xAlMHzZzM="
cache_root="${INFERWATCH_PROMETHEUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/prometheus}"

build_step() {
  go_release_build "$1" "$module" "$module_version" "$version" "./cmd/prometheus" "./cmd/promtool"
}

hash=$(recipe_hash build_step go_release_build -- "$module@$module_version" "$version" "$MODULE_SUM")
binary=$(cached_build "$cache_root" "$hash" \
  promtool build_step "building Prometheus $version ($module@$module_version)")
dirname "$binary"
