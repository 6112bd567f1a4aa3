#!/usr/bin/env bash
# The main job: install (idempotent, cached) and run the native demo stack.
# Extra arguments go to `inferwatch up`, e.g. scripts/demo.sh --proxy-port 18000 --duration 60
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$("$root/scripts/bootstrap.sh")
cd "$root"
export PATH="$venv/bin:$PATH"
exec "$venv/bin/inferwatch" up "$@"
