#!/usr/bin/env bash
# The benchmark: proxy vs direct MLflow, telemetry on vs off (see tests/benchmarks/bench_proxy.py).
# Extra arguments go to the benchmark, e.g. scripts/bench.sh --seconds 5 --rounds 2
exec "$(dirname "$0")/python" tests/benchmarks/bench_proxy.py "$@"
