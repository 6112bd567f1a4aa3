#!/usr/bin/env bash
# Builds Alertmanager and amtool from their Go module and prints the directory holding both.
#
# Usage:
#   observability/alertmanager/build.sh
#   "$(observability/alertmanager/build.sh | tail -n1)/alertmanager" --version
#
# Alertmanager 0.35.0 is the Go module github.com/prometheus/alertmanager at v0.35.0, built as
# Alertmanager's release builds do (see ../cached-build.sh: static, stamped, stripped). Its web
# UIs (Elm and React, built with npm and the Elm compiler, which downloads from GitHub) are not in
# the module, and ui/web.go embeds their folder, so a plain `go install` fails ("pattern app/dist:
# no matching files found"): prepare_source puts a one-page placeholder there that points at the
# API and amtool. Everything but the UI (the API, notifications, amtool) is as released.
#
# The last line of stdout is the directory of the two binaries; progress goes to stderr. They are
# cached under a directory named by the sha256 of the build's recipe (the module, its version and
# hash, the commands), so a second run only hashes that, and a version change builds afresh.
# Measured on 2 cores: see docs/development.md.
#
# Environment:
#   INFERWATCH_ALERTMANAGER_CACHE  cache root, e.g. /var/cache/alertmanager
#                                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/alertmanager)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../cached-build.sh"

module=github.com/prometheus/alertmanager
module_version=v0.35.0
version=0.35.0
export MODULE_SUM="h1:nbXMjr+P2JaoFd7aHNDxKifEwTPN+TWxM0gNPonuH5w="
cache_root="${INFERWATCH_ALERTMANAGER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/alertmanager}"

prepare_source() {
  local ui
  for ui in elm mantine; do
    mkdir -p "$1/ui/app/dist/$ui"
    # served gzipped only (ui/web.go)
    printf '%s\n' '<!doctype html><title>Alertmanager</title><p>This Alertmanager is built from its Go' \
      'module, which does not hold the web UI. Use <code>amtool</code> or the API:' \
      '<a href="api/v2/alerts">api/v2/alerts</a>, <a href="api/v2/status">api/v2/status</a>.' \
      | gzip -n > "$1/ui/app/dist/$ui/index.html.gz"
  done
}

build_step() {
  go_release_build "$1" "$module" "$module_version" "$version" "./cmd/alertmanager" "./cmd/amtool"
}

hash=$(recipe_hash build_step prepare_source go_release_build -- "$module@$module_version" "$version" "$MODULE_SUM")
binary=$(cached_build "$cache_root" "$hash" \
  amtool build_step "building Alertmanager $version ($module@$module_version)")
dirname "$binary"
