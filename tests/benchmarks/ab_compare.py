"""Before/after of one optimisation: the proxy at a git revision against the working tree.

Both proxies run with full telemetry (OTLP to a real collector, /metrics, the request log) in
front of the same MLflow model server, and are loaded in interleaved rounds (A B A B ...) with
wrk, so machine drift cancels out. Reports each side's proxy CPU per request (all of uWSGI's
processes, and the HTTP router's share of it), p50, p99 and req/s.

    python tests/benchmarks/ab_compare.py --baseline HEAD~1 [--rounds 4 --seconds 5 --concurrency 1 8] [--model-dir [--probabilities]] [--scrapes]
                                          [--rows 1]

``--model-dir`` gives both proxies the demo model (``INFERWATCH_MODEL_DIR``, with its reference
profile), so the working tree runs with model-quality telemetry; a baseline from before it ignores
the variable. ``--probabilities`` (with ``--model-dir``) has the working tree front the demo model
answering class probabilities (``predict_proba``, its profile calibrated on labelled reference
rows: the estimated performance runs) behind a second MLflow server, while the baseline fronts the
same model answering classes: what the estimate costs a classifier, data quality and all.


``--rows 5000`` sends the benchmark's large batch (the seed's row repeated) instead of one row.

``--current-env NAME=VALUE`` (repeatable) sets a variable for the working tree's proxy only, to
measure a feature that is off by default: with ``--baseline HEAD`` both sides run the same code and
the difference is the feature's cost. ``{work}`` in a value becomes the run's temporary directory::

    python tests/benchmarks/ab_compare.py --baseline HEAD --model-dir --concurrency 1 \
        --current-env 'INFERWATCH_PAYLOAD_LOG_DIR={work}/inference-log'
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench_proxy import ROOT, env_with
from harness import Scraper, cpu_seconds, median, percentile, router_cpu_seconds, run_wrk, wrk_script
from inferwatch.stack.demo_model import SEED_EXAMPLE, save_demo_model
from inferwatch.stack.processes import (
    CollectorPorts,
    ManagedProcess,
    build_collector,
    collector_command,
    collector_env,
    free_port,
    mlflow_serve_command,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--model-dir", action="store_true", help="both proxies get the demo model's directory")
    parser.add_argument("--probabilities", action="store_true",
                        help="with --model-dir: the working tree fronts the demo model answering class probabilities")
    parser.add_argument("--scrapes", action="store_true",
                        help="scrape /metrics (OpenMetrics) every 50 ms during each round; report its latency")
    parser.add_argument("--rows", type=int, default=1,
                        help="rows per prediction: the seed's example repeated (5000: the benchmark's large batch)")
    parser.add_argument("--current-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable for the working tree's proxy only (repeatable; {work} is the run's directory)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="inferwatch-ab-"))
    current_env = dict(item.replace("{work}", str(work)).split("=", 1) for item in args.current_env)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(work / "baseline"), args.baseline],
                   check=True, capture_output=True)
    processes: list[ManagedProcess] = []

    def spawn(name, command, env, ready):
        process = ManagedProcess(name, command, work / f"{name}.log", env=env).start()
        processes.append(process)
        process.wait_ready(ready, timeout=120)
        return process

    try:
        mlflow_port, collector = free_port(), CollectorPorts()
        model = save_demo_model(work / "model")
        spawn("mlflow", mlflow_serve_command(model, mlflow_port), env_with(), f"http://127.0.0.1:{mlflow_port}/ping")
        upstreams = {"baseline": (mlflow_port, model), "current": (mlflow_port, model)}
        if args.probabilities:
            scored_port, scored = free_port(), save_demo_model(work / "model-probabilities", probabilities=True)
            spawn("mlflow-probabilities", mlflow_serve_command(scored, scored_port), env_with(),
                  f"http://127.0.0.1:{scored_port}/ping")
            upstreams["current"] = (scored_port, scored)
        spawn("otelcol", collector_command(build_collector()),
              env_with(**collector_env(collector, work / "traces.jsonl")), f"http://127.0.0.1:{collector.health}/")
        sides = {}
        for name, source in (("baseline", work / "baseline" / "service"), ("current", ROOT / "service")):
            port = free_port()
            upstream_port, model_dir = upstreams[name]
            env = env_with(INFERWATCH_UPSTREAM=f"http://127.0.0.1:{upstream_port}", INFERWATCH_PORT=str(port),
                           OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.otlp_http}", OTEL_METRIC_EXPORT_INTERVAL="5000",
                           PYTHONPATH=str(source), **({"INFERWATCH_MODEL_DIR": str(model_dir)} if args.model_dir else {}),
                           **(current_env if name == "current" else {}))
            process = spawn(name, [sys.executable, "-m", "inferwatch", "serve"], env,
                            f"http://127.0.0.1:{port}/readyz")
            sides[name] = (f"http://127.0.0.1:{port}/predict", process)
        example = SEED_EXAMPLE["dataframe_split"]
        script = wrk_script(work, {"dataframe_split": {**example, "data": example["data"] * args.rows}})
        results: dict = {}
        for url, _ in sides.values():
            run_wrk(url, script, 2, 1)
        for concurrency in args.concurrency:
            for _ in range(args.rounds):
                for name, (url, process) in sides.items():
                    pid = process.process.pid
                    before, router_before = cpu_seconds(pid), router_cpu_seconds(pid)
                    scraper = Scraper(url.rsplit("/", 1)[0] + "/metrics") if args.scrapes else None
                    figures = run_wrk(url, script, concurrency, args.seconds)
                    if scraper is not None:
                        figures["scrape_ms"] = scraper.stop().latencies_ms
                    done = max(figures["requests"], 1)
                    figures["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / done
                    figures["router_cpu_ms"] = (router_cpu_seconds(pid) - router_before) * 1000 / done
                    results.setdefault(concurrency, {}).setdefault(name, []).append(figures)
        print(f"baseline {args.baseline} vs working tree{' with ' + ' '.join(args.current_env) if args.current_env else ''}, "
              f"medians of {args.rounds} interleaved rounds")
        print("| concurrency | side | proxy CPU ms/req | of which the HTTP router | p50 ms | p99 ms | req/s "
              "| /metrics p50 ms | /metrics p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        for concurrency, by_side in results.items():
            for name, runs in by_side.items():
                scrapes = sorted(ms for r in runs for ms in r.get("scrape_ms", ()))
                scraped = (f"| {percentile(scrapes, 0.5):.2f} | {percentile(scrapes, 0.99):.2f} |" if scrapes
                           else "| - | - |")
                print(f"| {concurrency} | {name} | {median([r['cpu_ms'] for r in runs]):.3f} "
                      f"| {median([r['router_cpu_ms'] for r in runs]):.3f} "
                      f"| {median([r['p50_ms'] for r in runs]):.2f} | {median([r['p99_ms'] for r in runs]):.2f} "
                      f"| {median([r['rps'] for r in runs]):.0f} " + scraped)
        for name, (url, _) in sides.items():  # what a feature turned on by --current-env did
            exposed = requests.get(url.rsplit("/", 1)[0] + "/metrics", timeout=10).text
            logged = [line for line in exposed.splitlines() if line.startswith("inference_log_") and not line.endswith(" 0.0")]
            if logged:
                print(f"{name}: " + "; ".join(logged))
    finally:
        for process in reversed(processes):
            process.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                       capture_output=True)
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
