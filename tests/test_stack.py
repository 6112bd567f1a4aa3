"""The native stack (`inferwatch up`) and the traffic generator (`inferwatch load`)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from conftest import child_env, total
from inferwatch.load import LoadPlan, run_load
from inferwatch.processes import free_port, http_ok


def test_load_report_agrees_with_the_proxys_counters(proxy):
    report = run_load(LoadPlan(proxy.url, count=60, concurrency=3, bad_share=0.3), progress=lambda *_: None)
    assert report.sent == 60
    assert 0 < report.succeeded < 60
    samples = proxy.metrics()
    assert total(samples, "prediction_success_total") == report.succeeded
    assert total(samples, "prediction_failure_total") == sum(report.failures.values())
    assert set(report.failures) <= {"400 invalid_json", "400 INVALID_PARAMETER_VALUE"}
    assert report.percentile(0.5) <= report.percentile(0.99)


def test_load_is_always_bounded():
    with pytest.raises(ValueError):
        LoadPlan(count=None, duration=None)
    with pytest.raises(ValueError):
        LoadPlan(bad_share=1.5)


def test_up_starts_the_stack_sends_traffic_and_leaves_nothing_behind(tmp_path):
    proxy_port, mlflow_port = free_port(), free_port()
    command = [sys.executable, "-m", "inferwatch", "up", "--run-dir", str(tmp_path),
               "--proxy-port", str(proxy_port), "--mlflow-port", str(mlflow_port),
               "--traffic", "20", "--duration", "1"]
    before = {p.pid for p in psutil.process_iter()}
    finished = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"http://127.0.0.1:{proxy_port}/metrics" in finished.stdout
    assert "sent 20" in finished.stdout and "succeeded 20" in finished.stdout
    assert "stopped" in finished.stdout
    assert not http_ok(f"http://127.0.0.1:{proxy_port}/healthz")
    assert not http_ok(f"http://127.0.0.1:{mlflow_port}/ping")
    leftovers = [p for p in psutil.process_iter(["pid", "cmdline"])
                 if p.pid not in before and str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
    assert {"mlflow.log", "proxy.log"} <= {p.name for p in tmp_path.iterdir()}


def test_up_says_which_port_is_taken(tmp_path, proxy):
    finished = subprocess.run(
        [sys.executable, "-m", "inferwatch", "up", "--run-dir", str(tmp_path), "--proxy-port", str(proxy.port),
         "--mlflow-port", str(free_port()), "--duration", "1"],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 1
    assert f"port {proxy.port} for the proxy is taken" in finished.stderr
