#!/usr/bin/env bash
# Installs the system packages the tests and the native stack use, once (idempotent): wrk for
# benchmarks, docker-compose to validate docker-compose.yml, Chromium (headless) for the
# dashboard's browser test and screenshots, and npm, which installs the dashboard's chart library
# (observability/prometheus/chart-library/install.sh).
# Prometheus, promtool, Alertmanager and amtool are no Debian packages here: the build scripts
# under observability/ build them from their Go modules (cached), like the collector and Jaeger.
# Go (for those builds) is expected on the machine; a missing one is reported.
set -euo pipefail
missing=()
for binary in wrk docker-compose chromium npm; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "system-deps: installing wrk docker-compose chromium npm (missing: ${missing[*]})" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    wrk docker-compose chromium npm >&2
fi
command -v go >/dev/null 2>&1 || { echo "system-deps: go not found; install Go >= 1.26 to build the collector, Jaeger, Prometheus and Alertmanager" >&2; exit 1; }
