"""The native stack (`inferwatch up`) and the traffic generator (`inferwatch load`)."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from conftest import child_env, total
from inferwatch.stack.inference_logs import Reader
from inferwatch.stack.load import LoadPlan, run_load
from inferwatch.stack.processes import free_port, http_ok
from inferwatch.stack.traces import JaegerQuery
from inferwatch.stack.up import StackPorts, port_answers, port_is_free


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


def read_until(stream, marker: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to the one containing ``marker`` (fails after ``timeout``)."""
    lines: list[str] = []
    done = threading.Event()

    def reader():
        for line in stream:
            lines.append(line.rstrip("\n"))
            if marker in line:
                done.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(timeout), "\n".join(lines[-30:])
    return lines


def prometheus_value(port: int, query: str) -> float | None:
    answer = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_up_runs_the_whole_stack_counts_reach_prometheus_and_nothing_is_left_behind(tmp_path):
    ports = StackPorts(**{field.name: free_port() for field in dataclasses.fields(StackPorts)
                          if field.name != "alertmanager_cluster"})
    command = [sys.executable, "-m", "inferwatch", "up", "--run-dir", str(tmp_path), "--traffic", "30",
               "--duration", "120"]
    for name, port in ports.named().items():
        command += [f"--{name.replace('_', '-')}-port", str(port)]
    up = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = read_until(up.stdout, "running; Ctrl-C stops the stack", timeout=240)
        output = "\n".join(lines)
        assert "sent 30" in output and "succeeded 30" in output, output
        for url in (f"http://127.0.0.1:{ports.proxy}/readyz", f"http://127.0.0.1:{ports.mlflow}/ping",
                    f"http://127.0.0.1:{ports.collector_health}/", f"http://127.0.0.1:{ports.prometheus}/-/ready",
                    f"http://127.0.0.1:{ports.alertmanager}/-/ready"):
            assert http_ok(url), url
        for printed in (f"http://127.0.0.1:{ports.proxy}/predict", f"http://127.0.0.1:{ports.proxy}/metrics",
                        f"http://127.0.0.1:{ports.prometheus}", f"http://127.0.0.1:{ports.alertmanager}",
                        str(tmp_path / "mail" / "new")):
            assert printed in output, printed
        assert port_answers(ports.smtp)
        # The dashboard's address comes first, and Prometheus serves its console page.
        url_lines = [line for line in lines if "http://" in line]
        dashboard = f"http://127.0.0.1:{ports.prometheus}/consoles/inferwatch.html"
        assert url_lines[0].split() == ["dashboard:", dashboard], url_lines
        page = requests.get(dashboard, timeout=10)
        assert page.status_code == 200 and "PromConsole.Graph" in page.text and "At a glance" in page.text
        deadline = time.monotonic() + 60
        while prometheus_value(ports.prometheus, "sum(prediction_success_total)") != 30:
            assert time.monotonic() < deadline, "the 30 successes never reached Prometheus through the collector"
            time.sleep(1)
        assert prometheus_value(ports.prometheus, 'sum(http_requests_total{job="inferwatch"})') == 30
        assert prometheus_value(ports.prometheus, "sum(prediction_failure_total)") == 0
        # The inference log: the proxy's OTLP records, written by the collector where
        # `inferwatch logs` reads them.
        inference_log = tmp_path / "inference-log"
        assert str(inference_log) in output
        while len(records := Reader([inference_log]).read() if inference_log.exists() else []) < 30:
            assert time.monotonic() < deadline, "the demo traffic's records never reached the collector's file"
            time.sleep(1)
        assert {r["outcome"] for r in records} == {"success"} and len(records) == 30
        # The trace store: Jaeger's query API has the demo traffic's traces (the stack keeps them
        # all), and Prometheus stores exemplars that lead there.
        assert http_ok(f"http://127.0.0.1:{ports.jaeger_health}/status")
        assert f"http://127.0.0.1:{ports.jaeger_query}/api/traces?service=inferwatch" in output
        jaeger = JaegerQuery(f"http://127.0.0.1:{ports.jaeger_query}")
        while len(jaeger.search("inferwatch", time.time() - 600, time.time(), limit=100)) < 30:
            assert time.monotonic() < deadline + 30, "the demo traffic's traces never reached Jaeger"
            time.sleep(1)
        while not (exemplars := requests.get(
                f"http://127.0.0.1:{ports.prometheus}/api/v1/query_exemplars", timeout=5,
                params={"query": "http_request_duration_seconds_bucket", "start": time.time() - 600,
                        "end": time.time()}).json()["data"]):
            assert time.monotonic() < deadline + 60, "no exemplar reached Prometheus"
            time.sleep(1)
        trace_id = exemplars[0]["exemplars"][0]["labels"]["trace_id"]
        assert jaeger.trace(trace_id) is not None
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        up.stdout.close()
    assert up.returncode == 0
    for name, port in ports.named().items():
        assert port_is_free(port), f"{name} still holds port {port}"
    leftovers = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
    assert {"mlflow.log", "proxy.log", "otelcol.log", "jaeger.log", "prometheus.log", "alertmanager.log",
            "smtp-sink.log"} <= {
        p.name for p in tmp_path.iterdir()}


def test_up_says_which_port_is_taken_before_starting_anything(tmp_path, proxy):
    finished = subprocess.run(
        [sys.executable, "-m", "inferwatch", "up", "--run-dir", str(tmp_path), "--proxy-port", str(proxy.port),
         "--duration", "1"],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 1
    assert f"port {proxy.port} for proxy is taken; choose another with --proxy-port" in finished.stderr
    assert not (tmp_path / "mlflow.log").exists()


def test_up_says_how_to_get_a_missing_binary(tmp_path):
    ports = StackPorts(**{field.name: free_port() for field in dataclasses.fields(StackPorts)
                          if field.name != "alertmanager_cluster"})
    env = child_env()
    env["PATH"] = str(Path(sys.executable).parent) + ":/nonexistent"  # mlflow only: no prometheus
    command = [sys.executable, "-m", "inferwatch", "up", "--run-dir", str(tmp_path), "--duration", "1"]
    for name, port in ports.named().items():
        command += [f"--{name.replace('_', '-')}-port", str(port)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert "prometheus not found on PATH" in finished.stderr and "apt-get install" in finished.stderr
