#!/usr/bin/env bash
# The benchmark: proxy vs direct MLflow, telemetry on vs off (see tests/benchmarks/bench_proxy.py).
# Extra arguments go to the benchmark, e.g. scripts/bench.sh --seconds 5 --rounds 2
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/system-deps.sh"
venv=$("$root/scripts/bootstrap.sh")
cd "$root"
export PATH="$venv/bin:$PATH" PYTHONPATH="$root/service${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" tests/benchmarks/bench_proxy.py "$@"
