#!/usr/bin/env bash
# Installs the chart library the native dashboard's console pages draw with (uPlot, MIT) from
# npm, pinned by package-lock.json (version and sha512), and prints the folder of the package (dist/, LICENSE).
#
# Usage:
#   observability/prometheus/chart-library/install.sh
#   ls "$(observability/prometheus/chart-library/install.sh | tail -n1)/dist"   # uPlot.iife.min.js ...
#
# `inferwatch up` inlines uPlot.iife.min.js and uPlot.min.css into a console library
# (inferwatch.render.consoles.console_library), so the pages load no file: nothing is vendored in
# the repository, and the browser fetches nothing but the pages and Prometheus's query API.
#
# The last line of stdout is the package folder (node_modules/uplot); progress goes to stderr. It is cached under
# a directory named by the sha256 of package.json and package-lock.json (see ../../cached-build.sh),
# so a second run only hashes those. npm's own cache (~/.npm) is left alone.
#
# Environment:
#   INFERWATCH_CHART_LIBRARY_CACHE  cache root
#                                   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/chart-library)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../cached-build.sh"
cache_root="${INFERWATCH_CHART_LIBRARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/chart-library}"

install_step() {
  cp "$here/package.json" "$here/package-lock.json" "$1/"
  # npm ci installs exactly the lock file's versions and checks each tarball's integrity.
  (cd "$1" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

library=$(cached_build "$cache_root" "$(files_hash "$here/package.json" "$here/package-lock.json")" \
  node_modules/uplot/dist/uPlot.iife.min.js install_step "installing uPlot from package-lock.json")
dirname "$(dirname "$library")"
