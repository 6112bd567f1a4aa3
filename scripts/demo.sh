#!/usr/bin/env bash
# The main job: install (idempotent, cached) and run the whole stack natively (no Docker):
# demo model, MLflow, the collector, the proxy, an SMTP sink, Alertmanager and Prometheus.
# Extra arguments go to `inferwatch up`, e.g. scripts/demo.sh --proxy-port 18000 --bad-share 0.3
exec "$(dirname "$0")/python" -m inferwatch up "$@"
