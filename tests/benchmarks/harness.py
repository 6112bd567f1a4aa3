"""Shared pieces of the benchmarks: wrk runs, process CPU time, medians, machine facts."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import psutil
import requests

from inferwatch.stack.demo_model import SEED_EXAMPLE

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
                 + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %%d %%d %%f %%f %%f\\n", summary.requests, errors,
           latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_script(directory: Path | None = None, payload: dict | None = None, name: str = "predict.lua") -> Path:
    import json

    path = Path(directory or tempfile.mkdtemp(prefix="wrk-")) / name
    path.write_text(WRK_SCRIPT % json.dumps(payload or SEED_EXAMPLE))
    return path


def run_wrk(url: str, script: Path, concurrency: int, seconds: int) -> dict:
    """One wrk run; latencies in ms. wrk's own overhead is native and small beside Python's."""
    threads = "1" if concurrency == 1 else "2"
    out = subprocess.run(
        ["wrk", "-t", threads, "-c", str(concurrency), "-d", f"{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    requests, errors, p50, p95, p99 = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out).groups()
    return {
        "requests": int(requests),
        "errors": int(errors),
        "rps": int(requests) / seconds,
        "p50_ms": float(p50) / 1000,
        "p95_ms": float(p95) / 1000,
        "p99_ms": float(p99) / 1000,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children, from /proc (via psutil)."""
    process = psutil.Process(pid)
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        times = each.cpu_times()
        total += times.user + times.system
    return total


def router_cpu_seconds(pid: int) -> float:
    """User + system CPU of uWSGI's HTTP router under the master ``pid``: its one-thread child (0 without one)."""
    total = 0.0
    for child in psutil.Process(pid).children():
        if child.num_threads() == 1:
            times = child.cpu_times()
            total += times.user + times.system
    return total


def median(values) -> float:
    return statistics.median(values)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine_facts() -> dict:
    versions = {}
    for package in ("mlflow", "flask", "pyuwsgi", "requests", "opentelemetry-sdk",
                    "opentelemetry-instrumentation-flask", "opentelemetry-exporter-prometheus"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


# What Prometheus 2.42 sends when it scrapes: OpenMetrics first, so /metrics writes exemplars.
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


class Scraper:
    """Scrapes a /metrics URL as Prometheus asks (OpenMetrics, gzip) on a thread of its own, at
    most 2,000 times, until stopped; with ``reference`` it also gets that URL between scrapes
    (e.g. /healthz: the least a request to the same process costs)."""

    def __init__(self, url: str, reference: str | None = None, pause: float = 0.05) -> None:
        self.latencies_ms: list[float] = []
        self.reference_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, reference, pause))
        self._thread.start()

    def _run(self, url: str, reference: str | None, pause: float) -> None:
        with requests.Session() as session:
            while not self._stop.is_set() and len(self.latencies_ms) < 2000:
                self.latencies_ms.append(_timed_get(session, url, {"Accept": OPENMETRICS_ACCEPT}))
                self._stop.wait(pause)
                if reference is not None:
                    self.reference_ms.append(_timed_get(session, reference, {}))
                    self._stop.wait(pause)

    def stop(self) -> Scraper:
        self._stop.set()
        self._thread.join()
        return self


def _timed_get(session: requests.Session, url: str, headers: dict) -> float:
    began = time.perf_counter()
    session.get(url, headers=headers, timeout=10).raise_for_status()
    return (time.perf_counter() - began) * 1000
