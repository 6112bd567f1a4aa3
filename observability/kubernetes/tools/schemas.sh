#!/usr/bin/env bash
# Fetches the schemas that rendered Kubernetes objects are validated against and prints their
# directory: the OpenAPI v3 documents of a pinned Kubernetes release, and the Prometheus Operator's
# CustomResourceDefinitions (ServiceMonitor, PodMonitor, PrometheusRule, ...).
#
# Usage:
#   observability/kubernetes/tools/schemas.sh
#   ls "$(observability/kubernetes/tools/schemas.sh | tail -n1)"/{openapi-v3,crds}
#
# Both come as Go modules through the module proxy (k8s.io/kubernetes holds api/openapi-spec/v3/,
# github.com/prometheus-operator/prometheus-operator holds example/prometheus-operator-crd/). Only
# those files are kept: the modules are downloaded into a throwaway module cache that is removed
# afterwards, so the Kubernetes source tree (135 MB) never lands in GOMODCACHE.
# The last line of stdout is the directory, named by both versions, holding
#   openapi-v3/*.json   one OpenAPI v3 document per API group version, e.g. apis__apps__v1_openapi.json
#   crds/*.yaml         one CustomResourceDefinition per file, with its openAPIV3Schema
# Progress goes to stderr. Measured on 2 cores: 7 s when nothing is cached (about 22 MB downloaded,
# 135 MB unpacked in the throwaway cache), 0.01 s when cached; the directory takes 15 MB.
#
# Environment:
#   INFERWATCH_K8S_SCHEMAS_CACHE  cache root, e.g. /var/cache/k8s-schemas
#                                 (default: ${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/k8s-schemas)
set -euo pipefail

kubernetes_version=v1.34.2
prometheus_operator_version=v0.85.0
cache_root="${INFERWATCH_K8S_SCHEMAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferwatch/k8s-schemas}"
schemas="$cache_root/kubernetes-$kubernetes_version+prometheus-operator-$prometheus_operator_version"

# Prints the directory `go mod download` extracted MODULE@VERSION into.
download_module() {
  local dir
  # Run outside any module and workspace, so that no go.mod changes what is fetched.
  dir=$(cd "$work" && GOWORK=off go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  if [[ ! -d "$dir" ]]; then
    echo "schemas.sh: go mod download $1 printed no directory" >&2
    return 1
  fi
  echo "$dir"
}

mkdir -p "$cache_root"
# Concurrent callers (parallel test workers) wait for one download instead of racing it.
exec 9>"$cache_root/.lock"
flock 9

if [[ ! -d "$schemas" ]]; then
  # Assemble beside the final directory and rename at the end: an interrupted run never leaves
  # a directory that a later run would take for finished.
  work=$(mktemp -d "$cache_root/.fetch-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # A module cache of its own, left writable (it is removed at the end); GOFLAGS from the
  # environment (e.g. -mod=vendor) must not apply to these downloads.
  export GOMODCACHE="$work/gomodcache" GOFLAGS=-modcacherw
  start=$SECONDS

  echo "schemas.sh: downloading k8s.io/kubernetes@$kubernetes_version" >&2
  kubernetes=$(download_module "k8s.io/kubernetes@$kubernetes_version")
  mkdir -p "$work/out/openapi-v3" "$work/out/crds"
  cp "$kubernetes"/api/openapi-spec/v3/*.json "$work/out/openapi-v3/"

  echo "schemas.sh: downloading github.com/prometheus-operator/prometheus-operator@$prometheus_operator_version" >&2
  operator=$(download_module "github.com/prometheus-operator/prometheus-operator@$prometheus_operator_version")
  cp "$operator"/example/prometheus-operator-crd/*.yaml "$work/out/crds/"

  rm -rf "$schemas"
  mv "$work/out" "$schemas"
  echo "schemas.sh: fetched in $((SECONDS - start)) s, $(du -sh "$schemas" | cut -f1)" >&2
fi

echo "$schemas"
