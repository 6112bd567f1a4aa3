#!/usr/bin/env bash
# The main job: install (idempotent, cached) and run the whole stack natively (no Docker):
# demo model, MLflow, the collector, the proxy, an SMTP sink, Alertmanager and Prometheus.
# Extra arguments go to `inferwatch up`, e.g. scripts/demo.sh --proxy-port 18000 --bad-share 0.3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/system-deps.sh"
venv=$("$root/scripts/bootstrap.sh")
cd "$root"
export PATH="$venv/bin:$PATH" PYTHONPATH="$root/service${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" -m inferwatch up "$@"
