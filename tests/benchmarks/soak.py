"""Soak: the proxy under minutes of mixed load, watched for leaks and for miscounting.

Starts a real MLflow model server on the demo model, the proxy (``inferwatch serve``, request log
on) and, with ``--collector``, the real collector the proxy exports OTLP to. Then sends
predictions as fast as ``--concurrency`` clients allow for ``--minutes``, a ``--bad-share`` of
them bad (invalid JSON, or a missing column the model rejects; see :mod:`inferwatch.stack.load`), and
samples the uWSGI worker's resident memory, open file descriptors and threads every
``--sample-every`` seconds. At the end it checks:

* every answer was expected: 200, MLflow's ``400 BAD_REQUEST`` (truncated JSON) or ``400 INVALID_PARAMETER_VALUE``;
* the proxy's counters equal the answers (and, with ``--collector``, the collector's equal the proxy's);
* resident memory after the warm-up (the first ``--warmup`` seconds) and the open file descriptors.

    python tests/benchmarks/soak.py                       # 5 minutes at 16 clients, 20 % bad
    python tests/benchmarks/soak.py --minutes 1 --collector

Prints a markdown table and writes ``results.md`` and ``results.json`` under
``tests/benchmarks/results/soak-<time>/`` (git ignores it); exits 1 when a check fails.
``tests/test_soak.py`` runs the same soak for 35 seconds in the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import requests

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script; under pytest tests/ is already on the path
    sys.path.insert(0, str(TESTS))

from inferwatch.stack.load import LoadPlan, LoadReport, run_load  # noqa: E402
from inferwatch.stack.processes import build_collector, free_port  # noqa: E402
from support import Collector, MlflowServer, parse_samples, start_proxy_process, total  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024

# What inferwatch.stack.load's requests may get back (its "status code" keys), and the failure reason
# the proxy counts for each. Anything else is an unexpected answer.
EXPECTED_FAILURES = {
    "400 BAD_REQUEST": "invalid_json",  # a truncated JSON body: MLflow's 400, counted invalid_json by the proxy
    "400 INVALID_PARAMETER_VALUE": "model_rejected",  # a missing column, answered by MLflow
}
COUNTERS = ("http_requests_total", "http_request_duration_seconds_count", "prediction_success_total",
            "prediction_failure_total", "active_requests")


@dataclass(frozen=True)
class ResourceSample:
    at_s: float  # seconds since the load started
    rss_bytes: int
    fds: int
    threads: int


@dataclass
class SoakResult:
    duration_s: float
    concurrency: int
    bad_share: float
    warmup_s: float
    report: LoadReport
    samples: list[ResourceSample]
    counted: dict[str, float]  # the proxy's /metrics after the load
    worker_survived: bool
    collector_counted: dict[str, float] | None = None
    figures: dict = field(init=False)

    def __post_init__(self):
        self.figures = self._figures()

    def after_warmup(self) -> list[ResourceSample]:
        return [s for s in self.samples if s.at_s >= self.warmup_s]

    def unexpected(self) -> dict[str, int]:
        return {answer: n for answer, n in self.report.failures.items() if answer not in EXPECTED_FAILURES}

    def counter_mismatches(self) -> dict[str, tuple[float, float]]:
        """name -> (what the answers say, what the proxy counted), for each counter that differs."""
        report = self.report
        truth = {
            "http_requests_total": report.sent,
            "http_request_duration_seconds_count": report.sent,
            "prediction_success_total": report.succeeded,
            "prediction_failure_total": report.sent - report.succeeded,
            "active_requests": 0,
        }
        for answer, reason in EXPECTED_FAILURES.items():
            truth[f"prediction_failure_by_reason_total{{reason={reason}}}"] = report.failures[answer]
        wrong = {name: (value, self.counted[name]) for name, value in truth.items() if self.counted[name] != value}
        if self.collector_counted is not None:
            for name in COUNTERS:
                if self.collector_counted[name] != self.counted[name]:
                    wrong[f"collector {name}"] = (self.counted[name], self.collector_counted[name])
        return wrong

    def _figures(self) -> dict:
        steady = self.after_warmup()
        rss = [s.rss_bytes for s in steady]
        fds = [s.fds for s in steady]
        threads = [s.threads for s in steady]
        baseline = rss[0]
        report = self.report
        return {
            "duration_s": round(report.elapsed_s, 1),
            "concurrency": self.concurrency,
            "bad_share": self.bad_share,
            "requests_sent": report.sent,
            "requests_per_s": round(report.sent / report.elapsed_s, 1),
            "answers": {"200": report.succeeded, **dict(report.failures)},
            "unexpected_answers": sum(self.unexpected().values()),
            "counter_mismatches": {k: list(v) for k, v in self.counter_mismatches().items()},
            "collector_checked": self.collector_counted is not None,
            "worker_survived": self.worker_survived,
            "latency_ms": {f"p{int(q * 100)}": round(report.percentile(q) * 1000, 1) for q in (0.5, 0.95, 0.99)},
            "warmup_s": self.warmup_s,
            "samples_after_warmup": len(steady),
            "rss_mib_after_warmup": round(baseline / MIB, 1),
            "rss_mib_end": round(rss[-1] / MIB, 1),
            "rss_mib_peak": round(max(rss) / MIB, 1),
            "rss_growth_end_percent": round(100 * (rss[-1] - baseline) / baseline, 2),
            "rss_growth_peak_percent": round(100 * (max(rss) - baseline) / baseline, 2),
            "fds_min": min(fds),
            "fds_max": max(fds),
            # Each request in the worker holds the router's connection for it, so the count moves
            # with the requests in flight; a leak shows as the second half's median above the first's.
            "fds_median_first_half": statistics.median(fds[: len(fds) // 2] or fds),
            "fds_median_second_half": statistics.median(fds[len(fds) // 2:]),
            "threads_min": min(threads),
            "threads_max": max(threads),
        }

    def markdown(self) -> str:
        f = self.figures
        answers = ", ".join(f"{answer}: {n}" for answer, n in sorted(f["answers"].items()))
        wrong = f["counter_mismatches"]
        mismatches = "; ".join(f"{k} expected {v[0]}, counted {v[1]}" for k, v in wrong.items())
        collector = ("not run" if not f["collector_checked"]
                     else "NO" if any(k.startswith("collector ") for k in wrong) else "yes")
        rows = [
            ("duration", f"{f['duration_s']} s ({f['warmup_s']:.0f} s warm-up)"),
            ("clients / bad share", f"{f['concurrency']} / {f['bad_share']:.0%}"),
            ("requests sent", f"{f['requests_sent']} ({f['requests_per_s']} req/s)"),
            ("answers", answers),
            ("unexpected answers", str(f["unexpected_answers"])),
            ("counters equal the answers", "yes" if not mismatches else f"NO: {mismatches}"),
            ("collector's counters equal the proxy's", collector),
            ("latency p50 / p95 / p99", "{p50} / {p95} / {p99} ms".format(**f["latency_ms"])),
            ("worker RSS after warm-up -> end (peak)",
             f"{f['rss_mib_after_warmup']} -> {f['rss_mib_end']} MiB ({f['rss_mib_peak']} MiB)"),
            ("RSS growth after warm-up, end (peak)",
             f"{f['rss_growth_end_percent']:+.2f} % ({f['rss_growth_peak_percent']:+.2f} %)"),
            ("open file descriptors after warm-up, min-max", f"{f['fds_min']}-{f['fds_max']}"),
            ("open file descriptors, median of the first half -> second half",
             f"{f['fds_median_first_half']} -> {f['fds_median_second_half']}"),
            ("worker threads, min-max", f"{f['threads_min']}-{f['threads_max']}"),
            ("worker survived", "yes" if f["worker_survived"] else "NO"),
        ]
        return "\n".join(["| figure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def uwsgi_worker(master_pid: int) -> psutil.Process:
    """The process that runs the app: the proxy's pid is uWSGI's master, which forks one worker, with
    the request threads, and the HTTP router, with one thread."""
    [worker] = [child for child in psutil.Process(master_pid).children() if child.num_threads() > 1]
    return worker


def sample(worker: psutil.Process, started: float) -> ResourceSample:
    with worker.oneshot():
        return ResourceSample(round(time.monotonic() - started, 2), worker.memory_info().rss, worker.num_fds(),
                              worker.num_threads())


def contract_totals(metrics_text: str) -> dict[str, float]:
    samples = parse_samples(metrics_text)
    totals = {name: total(samples, name) for name in COUNTERS}
    for reason in EXPECTED_FAILURES.values():
        totals[f"prediction_failure_by_reason_total{{reason={reason}}}"] = total(
            samples, "prediction_failure_by_reason_total", reason=reason)
    return totals


def soak(
    proxy_url: str,
    master_pid: int,
    duration_s: float,
    concurrency: int = 16,
    bad_share: float = 0.2,
    warmup_s: float = 60.0,
    sample_every_s: float = 5.0,
    collector_metrics_url: str | None = None,
    on_sample=lambda sample: None,
) -> SoakResult:
    """Run the load in a thread, sample the worker meanwhile, then read the counters."""
    worker = uwsgi_worker(master_pid)
    plan = LoadPlan(proxy_url, count=None, concurrency=concurrency, duration=duration_s, bad_share=bad_share)
    reports: list[LoadReport] = []
    load = threading.Thread(target=lambda: reports.append(run_load(plan, progress=lambda *_: None)), daemon=True)
    started = time.monotonic()
    load.start()
    samples = []
    while load.is_alive():
        # Only samples under full load: once the duration is up the clients close their
        # connections, and the falling FD count is the wind-down, not a leak.
        if time.monotonic() - started < duration_s:
            samples.append(sample(worker, started))
            on_sample(samples[-1])
        load.join(timeout=sample_every_s)
    [report] = reports
    survived = worker.is_running() and uwsgi_worker(master_pid) == worker
    counted = contract_totals(requests.get(proxy_url + "/metrics", timeout=10).text)
    collector_counted = None
    if collector_metrics_url is not None:
        collector_counted = _collector_totals(collector_metrics_url, counted["http_requests_total"])
    return SoakResult(duration_s, concurrency, bad_share, warmup_s, report, samples, counted, survived,
                      collector_counted)


def _collector_totals(metrics_url: str, requests_counted: float, timeout_s: float = 30.0) -> dict[str, float]:
    """The collector's totals once its export has caught up with the proxy (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        totals = contract_totals(requests.get(metrics_url, timeout=10).text)
        if totals["http_requests_total"] == requests_counted or time.monotonic() > deadline:
            return totals
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the load (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--bad-share", type=float, default=0.2, help="share of bad requests (default 0.2)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the growth (default 60)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--collector", action="store_true", help="export OTLP to a real collector and compare")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    args = parser.parse_args(argv)
    if args.minutes * 60 <= args.warmup + 2 * args.sample_every:
        parser.error("--minutes must leave samples after the --warmup")

    from inferwatch.stack.demo_model import save_demo_model

    workdir = Path(tempfile.mkdtemp(prefix="inferwatch-soak-"))
    started: list = []
    try:
        mlflow = MlflowServer(save_demo_model(workdir / "model"), free_port(), workdir / "mlflow.log")
        started.append(mlflow.start())
        env, collector = {}, None
        if args.collector:
            (workdir / "otelcol").mkdir()
            collector = Collector(build_collector(), workdir / "otelcol")
            started.append(collector.start())
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http, "OTEL_METRIC_EXPORT_INTERVAL": "5000"}
        proxy = start_proxy_process(mlflow.url, workdir, env=env)
        started.append(proxy.process)
        url = proxy.url

        def progress(each: ResourceSample) -> None:
            print(f"  {each.at_s:7.1f} s  rss {each.rss_bytes / MIB:7.1f} MiB  fds {each.fds:3d}  "
                  f"threads {each.threads}", file=sys.stderr, flush=True)

        print(f"soak: {args.minutes} min, {args.concurrency} clients, {args.bad_share:.0%} bad, logs in {workdir}",
              file=sys.stderr)
        result = soak(url, proxy.process.pid, args.minutes * 60, args.concurrency, args.bad_share, args.warmup,
                      args.sample_every, collector.metrics_url if collector else None, on_sample=progress)
    finally:
        for component in reversed(started):
            component.stop()

    out = args.out or RESULTS / time.strftime("soak-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    table = result.markdown()
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(
        {"figures": result.figures, "samples": [asdict(s) for s in result.samples]}, indent=2) + "\n")
    print(table)
    print(f"\nwritten to {out}")
    failed = result.unexpected() or result.counter_mismatches() or not result.worker_survived
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
