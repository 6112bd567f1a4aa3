#!/usr/bin/env bash
# Builds Helm from its Go module and prints the binary's path.
#
# Usage:
#   observability/kubernetes/tools/helm.sh
#   "$(observability/kubernetes/tools/helm.sh | tail -n1)" lint chart/
#
# The last line of stdout is the binary's absolute path; progress goes to stderr. The binary is
# cached under a directory named by the Helm version, so a second run only checks that the file
# is there. Go's own module and build caches (GOMODCACHE, GOCACHE, GOFLAGS as the environment sets
# them) are left alone. Measured on 2 cores: 96 s with empty Go caches (about 5 min while other
# builds share the cores; the caches then hold 410 MB of modules and 720 MB of build output),
# 0.01 s when cached; the binary is 59 MB.
#
# Environment:
#   INFERWATCH_HELM_CACHE  cache root, e.g. /var/cache/helm
#                          (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/helm)
set -euo pipefail

version=v3.22.0
cache_root="${INFERWATCH_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/helm}"
binary="$cache_root/$version/helm"

mkdir -p "$cache_root"
# Concurrent callers (parallel test workers) wait for one build instead of racing it.
exec 9>"$cache_root/.lock"
flock 9

if [[ ! -x "$binary" ]]; then
  # Install beside the final directory and rename at the end: an interrupted build never leaves
  # a binary that a later run would take for finished.
  staging=$(mktemp -d "$cache_root/.build-XXXXXX")
  chmod 755 "$staging"
  trap 'rm -rf "$staging"' EXIT
  echo "helm.sh: building helm $version into $staging" >&2
  start=$SECONDS
  # The same flags as Helm's Makefile: without them the binary calls itself "v3.22" and renders
  # for Kubernetes v1.20 (`.Capabilities.KubeVersion`, lint's deprecation checks). Helm's release
  # derives that default from the k8s.io/client-go it requires (v0.N.x -> Kubernetes 1.N).
  gomod=$(cd / && go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  kube_minor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$gomod")
  if [[ -z "$kube_minor" ]]; then
    echo "helm.sh: cannot read the k8s.io/client-go version from $gomod" >&2
    exit 1
  fi
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$version"
  for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$kube_minor"
  done
  # `go install pkg@version` ignores any go.mod around it, so the working directory does not matter.
  CGO_ENABLED=0 GOBIN="$staging" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
  rm -rf "$cache_root/$version"
  mv "$staging" "$cache_root/$version"
  trap - EXIT
  echo "helm.sh: built in $((SECONDS - start)) s" >&2
fi

echo "$binary"
