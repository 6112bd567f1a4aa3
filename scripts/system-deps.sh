#!/usr/bin/env bash
# Installs the system packages the tests and the native stack use, once (idempotent):
# Prometheus, promtool, Alertmanager (installed as prometheus-alertmanager) and amtool from
# Debian's packages, wrk for benchmarks, docker-compose to validate docker-compose.yml, and
# Chromium (headless) for the dashboard's browser test and screenshots.
# Go (for the collector build) is expected on the machine; a missing one is reported.
set -euo pipefail
missing=()
for binary in prometheus promtool prometheus-alertmanager amtool wrk docker-compose chromium; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "system-deps: installing prometheus prometheus-alertmanager wrk docker-compose chromium (missing: ${missing[*]})" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager wrk docker-compose chromium >&2
fi
command -v go >/dev/null 2>&1 || { echo "system-deps: go not found; install Go >= 1.26 to build the collector and Jaeger" >&2; exit 1; }
