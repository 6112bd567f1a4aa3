# Sourced by the build scripts under observability/ (Jaeger, Prometheus, Alertmanager, the Grafana
# schema checker, the dashboard's chart-library/install.sh): build a binary (or install a package)
# once per input hash, cache it, and print its path. otel-collector/build.sh keeps the same steps
# in its own file: its image builds with its folder alone as the Docker context.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../cached-build.sh"
#   build_step() { go build -o "$1/tool" ...; }    # $1: the staging directory to fill
#   cached_build "$cache_root" "$hash" tool build_step "building tool 1.2.3"
#
# cached_build CACHE_ROOT HASH FILE STEP MESSAGE prints CACHE_ROOT/HASH/FILE on stdout (the last
# line: callers take `tail -n1`); progress goes to stderr. When that file is missing it runs
# STEP STAGING with stdout sent to stderr. Concurrent callers (parallel test workers) wait on one
# lock for one build instead of racing it, and the build fills a staging directory beside the
# final one that is renamed at the end, so an interrupted build never leaves a directory that a
# later run would take for finished. Go's own caches (GOMODCACHE, GOCACHE, GOFLAGS as the
# environment sets them) are left alone, so a rebuild after a version change reuses them.
#
# go_release_build STAGING MODULE VERSION DISPLAY_VERSION PACKAGE... builds PACKAGE... (directories
# of MODULE, e.g. ./cmd/promtool) into STAGING as the Prometheus project's release builds (promu,
# from its .promu.yml) do: static (CGO off, netgo), -trimpath, github.com/prometheus/common/version
# stamped (what `--version` prints; a plain `go install` leaves it empty), stripped. It builds in a
# copy of the module's source with the module as the main module, which is what `go install
# MODULE/cmd/x@VERSION` does, so the module's own go.sum pins every dependency; a caller's
# prepare_source function, when defined, may first add what the module lacks (Alertmanager's UI
# assets). GOWORK=off: a go.work in the module (Prometheus has one) is not what it publishes. Go
# checks the module against sum.golang.org, and MODULE_SUM, when set, must equal its
# h1: hash too, so a pin cannot drift even where GONOSUMDB or GOFLAGS=-insecure turn that check
# off. The revision stamped is that hash: the module proxy does not serve the commit a version was
# tagged on.

cached_build() {
  local cache_root=$1 hash=$2 file=$3 step=$4 message=$5
  local build_dir="$cache_root/$hash"
  mkdir -p "$cache_root"
  exec 9>"$cache_root/.lock"
  flock 9
  if [[ ! -e "$build_dir/$file" ]]; then
    local staging start
    staging=$(mktemp -d "$cache_root/.build-XXXXXX")
    chmod 755 "$staging"
    # shellcheck disable=SC2064 # expand now: $staging is local to this function
    trap "rm -rf '$staging'" EXIT
    echo "$(basename "$0"): $message in $staging" >&2
    start=$SECONDS
    "$step" "$staging" >&2
    rm -rf "$build_dir"
    mv "$staging" "$build_dir"
    trap - EXIT
    echo "$(basename "$0"): built in $((SECONDS - start)) s" >&2
  fi
  exec 9>&-
  echo "$build_dir/$file"
}

# The sha256 of the named files' contents, in the order given (not their paths: a checkout and
# an installed package share one cache).
files_hash() {
  cat "$@" | sha256sum | cut -d' ' -f1
}

# recipe_hash FUNCTION... -- VALUE...: the sha256 of what a build runs (the functions' text, as
# bash prints it, so editing a comment does not rebuild) and the values it runs with.
recipe_hash() {
  local functions=()
  while [[ $# -gt 0 && $1 != -- ]]; do functions+=("$1"); shift; done
  shift
  { declare -f "${functions[@]}"; printf '%s\n' "$@"; } | sha256sum | cut -d' ' -f1
}

go_release_build() {
  local staging=$1 module=$2 version=$3 display_version=$4
  shift 4
  local download dir sum
  download=$(go mod download -json "$module@$version")
  dir=$(awk -F'"' '$2 == "Dir" { print $4 }' <<<"$download")
  sum=$(awk -F'"' '$2 == "Sum" { print $4 }' <<<"$download")
  if [[ -z "$dir" || -z "$sum" || ( -n "${MODULE_SUM:-}" && "$sum" != "$MODULE_SUM" ) ]]; then
    echo "build.sh: $module@$version has the hash '$sum', pinned: '${MODULE_SUM:-}'" >&2
    return 1
  fi
  cp -r "$dir" "$staging/src"
  chmod -R u+w "$staging/src"
  if declare -F prepare_source >/dev/null; then prepare_source "$staging/src"; fi
  local stamp=github.com/prometheus/common/version
  (cd "$staging/src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -tags netgo -ldflags="-s -w
    -X $stamp.Version=$display_version -X $stamp.Revision=$sum -X $stamp.Branch=HEAD
    -X $stamp.BuildUser=$(id -un)@$(hostname) -X $stamp.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" \
    -o "$staging/" "$@")
  rm -rf "$staging/src"
}
