"""``inferwatch load``: demo traffic in the spirit of the seed's inference.py.

Sends single-row predictions in the seed's ``dataframe_split`` shape with varied rows, at a fixed
rate or as fast as the concurrency allows, bounded by a count and a duration. An optional share
of bad requests (invalid JSON, a missing column) makes the failure-rate alert fire on purpose.
Prints a progress line while it runs and a summary at the end: sent, succeeded, failed by
reason, and latency p50/p95/p99.

    inferwatch load --count 500 --concurrency 4
    inferwatch load --rate 20 --duration 120 --bad-share 0.3
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import urllib3

from inferwatch.stack.demo_model import PIMA_COLUMNS

MAX_DURATION_S = 24 * 3600.0


@dataclass(frozen=True)
class LoadPlan:
    url: str = "http://127.0.0.1:8000"
    count: int | None = 100
    rate: float | None = None  # requests per second over all workers; None: as fast as possible
    concurrency: int = 4
    duration: float | None = None
    bad_share: float = 0.0
    seed: int = 7

    def __post_init__(self):
        if self.count is None and self.duration is None:
            raise ValueError("give a --count or a --duration: every load run is bounded")
        if not 0.0 <= self.bad_share <= 1.0:
            raise ValueError("--bad-share is a fraction between 0 and 1")
        if self.concurrency < 1 or (self.rate is not None and self.rate <= 0):
            raise ValueError("--concurrency and --rate must be positive")


@dataclass
class LoadReport:
    sent: int = 0
    succeeded: int = 0
    failures: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        lines = [
            f"sent {self.sent} in {self.elapsed_s:.1f} s ({self.sent / max(self.elapsed_s, 1e-9):.1f} req/s)",
            f"succeeded {self.succeeded}",
            f"failed {sum(self.failures.values())}"
            + "".join(f"\n  {reason}: {n}" for reason, n in sorted(self.failures.items())),
            "latency p50 {:.1f} ms, p95 {:.1f} ms, p99 {:.1f} ms".format(
                *(self.percentile(q) * 1000 for q in (0.50, 0.95, 0.99))
            ),
        ]
        return "\n".join(lines)


def good_body(rng: random.Random) -> bytes:
    row = [round(rng.gauss(0.0, 1.0), 3) for _ in PIMA_COLUMNS]
    return json.dumps({"dataframe_split": {"columns": list(PIMA_COLUMNS), "data": [row]}}).encode()


def bad_body(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return b'{"dataframe_split": {"columns": '  # invalid JSON: the proxy answers 400
    row = [round(rng.gauss(0.0, 1.0), 3) for _ in PIMA_COLUMNS[:-1]]
    return json.dumps({"dataframe_split": {"columns": list(PIMA_COLUMNS[:-1]), "data": [row]}}).encode()


def _failure_reason(status: int, body: bytes) -> str:
    try:
        payload = json.loads(body)
        code = payload.get("error", {}).get("code") or payload.get("error_code")
    except (ValueError, AttributeError):
        code = None
    return f"{status} {code}" if code else str(status)


class _Run:
    def __init__(self, plan: LoadPlan, progress, stop: threading.Event | None = None):
        self.plan = plan
        self.progress = progress
        self.stop = stop or threading.Event()
        self.report = LoadReport()
        self.lock = threading.Lock()
        self.next_index = 0
        self.pool = urllib3.PoolManager(maxsize=plan.concurrency, retries=False, timeout=urllib3.Timeout(total=60))
        self.start = time.monotonic()
        self.deadline = self.start + min(plan.duration or MAX_DURATION_S, MAX_DURATION_S)

    def _take(self) -> int | None:
        with self.lock:
            index = self.next_index
            if self.plan.count is not None and index >= self.plan.count:
                return None
            self.next_index += 1
            return index

    def worker(self) -> None:
        while (index := self._take()) is not None:
            if self.plan.rate is not None:
                delay = self.start + index / self.plan.rate - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    return
            if time.monotonic() >= self.deadline or self.stop.is_set():
                return
            rng = random.Random(self.plan.seed * 1_000_003 + index)
            body = bad_body(rng) if rng.random() < self.plan.bad_share else good_body(rng)
            self._send(body)

    def _send(self, body: bytes) -> None:
        began = time.perf_counter()
        try:
            response = self.pool.request(
                "POST", self.plan.url + "/predict", body=body, headers={"Content-Type": "application/json"}
            )
            outcome = None if response.status == 200 else _failure_reason(response.status, response.data)
        except urllib3.exceptions.HTTPError as error:
            outcome = f"transport {type(error).__name__}"
        latency = time.perf_counter() - began
        with self.lock:
            self.report.sent += 1
            self.report.latencies_s.append(latency)
            if outcome is None:
                self.report.succeeded += 1
            else:
                self.report.failures[outcome] += 1

    def run(self) -> LoadReport:
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.plan.concurrency)]
        for thread in workers:
            thread.start()
        while any(thread.is_alive() for thread in workers):
            for thread in workers:
                thread.join(timeout=0.2)
            self.progress(self.report, self.plan)
        self.report.elapsed_s = time.monotonic() - self.start
        self.pool.clear()
        return self.report


def progress_line(report: LoadReport, plan: LoadPlan, stream=sys.stderr) -> None:
    if plan.count:
        done = report.sent / plan.count
        bar = "#" * int(done * 30)
        stream.write(f"\r[{bar:<30}] {report.sent}/{plan.count} ok {report.succeeded} failed {report.sent - report.succeeded}")
    else:
        stream.write(f"\r{report.sent} sent, ok {report.succeeded}, failed {report.sent - report.succeeded}")
    stream.flush()


def run_load(plan: LoadPlan, progress=progress_line, stop: threading.Event | None = None) -> LoadReport:
    """Send ``plan``'s requests; setting ``stop`` ends the run early (what was sent is reported)."""
    report = _Run(plan, progress, stop).run()
    if progress is progress_line:
        sys.stderr.write("\n")
    return report
