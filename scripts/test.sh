#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent, cached) and runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k exact -x
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/system-deps.sh"
venv=$("$root/scripts/bootstrap.sh")
cd "$root"
export PATH="$venv/bin:$PATH" PYTHONPATH="$root/service${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" -m pytest "$@"
