"""Several worker processes per proxy (``--workers``): exact totals through the collector, and
a direct /metrics that refuses to show one worker's share.

Each worker counts its own requests and exports them over OTLP under its own
``service.instance.id`` (``<pod>/<worker>``), so the collector keeps one series per worker and the
sums equal what the clients saw. Host metrics describe the host: only worker 1 reports them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from inferwatch.proxy.config import ConfigError, load_settings
from inferwatch.proxy.server import uwsgi_command
from inferwatch.proxy.telemetry import build_resource
from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import child_env, otlp_env, parse_samples, total, tunable_payload
from test_collector import wait_for

POD = "fraud-model-7d9f8c-x2k4q"
JSON = {"Content-Type": "application/json"}

# (method, path, body, headers) -> what the client sends; the answer's status is what it saw.
REQUESTS = {
    "prediction": ("POST", "/predict", SEED_EXAMPLE, None),
    "invocation": ("POST", "/invocations", SEED_EXAMPLE, None),
    "invalid_json": ("POST", "/predict", b"{", JSON),
    "model_rejected": ("POST", "/predict", {"dataframe_split": {"columns": ["Age"], "data": [[1.0]]}}, None),
    "unsupported_media_type": ("POST", "/invocations", b"x", {"Content-Type": "text/plain"}),
    "unmatched": ("GET", "/no/such/route", None, None),
}
# Of every 10 requests: 5 predictions, 1 invocation, 1 each of the failures, 1 unmatched path.
MIX = ["prediction"] * 5 + ["invocation", "invalid_json", "model_rejected", "unsupported_media_type", "unmatched"]
ROUTE_OF = {"/predict": "/predict", "/invocations": "/invocations", "/no/such/route": "unmatched"}


def send(url: str, kind: str) -> tuple[str, str, str]:
    """One request on a connection of its own (so the workers share the connections); returns
    the labels it must be counted under: (method, route, status)."""
    method, path, body, headers = REQUESTS[kind]
    payload = {"json": body} if isinstance(body, dict) else {"data": body}
    answer = requests.request(method, url + path, headers=headers, timeout=30, **payload)
    return method, ROUTE_OF[path], str(answer.status_code)


def send_mixed_load(url: str, rounds: int, concurrency: int) -> Counter:
    kinds = MIX * rounds
    with ThreadPoolExecutor(concurrency) as pool:
        return Counter(pool.map(lambda kind: send(url, kind), kinds))


def by_labels(samples: dict, name: str, *labels: str) -> Counter:
    """{label values: summed value} of one metric, summed over every other label (instance too)."""
    summed: Counter = Counter()
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name:
            found = dict(sample_labels)
            summed[tuple(found[label] for label in labels)] += value
    return +summed


def instances_of(samples: dict, name: str) -> dict[str, float]:
    found: Counter = Counter()
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            found[dict(labels)["instance"]] += value
    return dict(found)


def test_two_workers_through_the_collector_count_every_request_the_clients_saw(
        mlflow_server, start_collector, start_proxy):
    collector = start_collector()
    # Two threads each: eight concurrent clients keep both workers accepting connections.
    proxy = start_proxy(mlflow_server.url, env={**otlp_env(collector), "K8S_POD_NAME": POD},
                        workers="2", threads="2")
    seen = send_mixed_load(proxy.url, rounds=24, concurrency=8)
    sent = sum(seen.values())

    answer = requests.get(proxy.url + "/metrics", timeout=5)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert "2 worker processes" in answer.json()["error"]["message"]
    assert "scrape the collector" in answer.json()["error"]["message"]

    # Stopping the proxy flushes each worker's last counts: no waiting for an export interval.
    # The signal goes to the whole process group, as Ctrl-C in a terminal does; every worker
    # still stops cleanly (exit code 0, not killed when the wait ran out).
    assert proxy.process.stop() == 0
    samples = wait_for(
        lambda: (s := parse_samples(collector.metrics_text())) and total(s, "http_requests_total") == sent and s,
        timeout=20, what=f"{sent} requests on the collector")

    assert by_labels(samples, "http_requests_total", "method", "route", "status") == seen
    assert by_labels(samples, "http_request_duration_seconds_count", "method", "route", "status") == seen
    successes = seen[("POST", "/predict", "200")] + seen[("POST", "/invocations", "200")]
    assert total(samples, "prediction_success_total") == successes == 6 * 24
    assert total(samples, "prediction_failure_total") == 3 * 24
    assert by_labels(samples, "prediction_failure_by_reason_total", "reason") == {
        ("invalid_json",): 24, ("model_rejected",): 24, ("unsupported_media_type",): 24}
    assert total(samples, "active_requests") == 0

    served = instances_of(samples, "http_requests_total")
    assert set(served) == {f"{POD}/1", f"{POD}/2"}, "each worker reports under its own instance"
    assert all(count > 0 for count in served.values()), f"one worker served everything: {served}"
    # The host is reported once, by worker 1; the request rate by every worker.
    for host_metric in ("system_cpu_usage", "system_ram_usage", "system_memory_usage_mb", "system_disk_usage"):
        assert set(instances_of(samples, host_metric)) == {f"{POD}/1"}, host_metric
    assert set(instances_of(samples, "http_requests_throughput")) == {f"{POD}/1", f"{POD}/2"}
    assert set(instances_of(samples, "target_info")) == {f"{POD}/1", f"{POD}/2"}


@pytest.mark.parametrize("stop", ["sigterm_to_the_master", "sigint_to_the_process_group"])
def test_a_stop_lets_every_workers_requests_finish_and_flushes_their_counts(
        tunable_mlflow, start_collector, start_proxy, stop):
    """SIGTERM to the first process is what Kubernetes sends on a rollout; SIGINT to the whole
    process group is Ctrl-C in a terminal, which reaches every worker besides the master, and the
    HTTP router too. The router owns the client connections and exits on it at once, so after a
    Ctrl-C the clients of requests in flight may see their connection close; the workers still
    finish those requests and count and flush them."""
    collector = start_collector()
    proxy = start_proxy(tunable_mlflow.url, env={**otlp_env(collector), "K8S_POD_NAME": POD},
                        workers="2", threads="2")
    url = proxy.url + "/predict"
    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(requests.post, url, json=tunable_payload(delay_s=1.0), timeout=30) for _ in range(4)]
        wait_for(lambda: total(parse_samples(collector.metrics_text()), "active_requests") == 4, 10,
                 what="4 requests in flight")
        if stop == "sigterm_to_the_master":
            proxy.process.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(proxy.process.process.pid, signal.SIGINT)
        statuses = [_status(answer) for answer in answers]
    if stop == "sigterm_to_the_master":
        assert statuses == [200] * 4
    else:
        assert set(statuses) <= {200, "closed"}, statuses
    assert proxy.process.process.wait(20) == 0
    samples = wait_for(lambda: (s := parse_samples(collector.metrics_text()))
                       and total(s, "prediction_success_total") == 4 and s, 20, what="4 successes")
    assert set(instances_of(samples, "prediction_success_total")) == {f"{POD}/1", f"{POD}/2"}
    assert total(samples, "active_requests") == 0


def _status(answer) -> int | str:
    try:
        return answer.result().status_code
    except requests.ConnectionError:
        return "closed"


def test_several_workers_without_otlp_export_refuse_to_start_and_say_why():
    done = subprocess.run([sys.executable, "-m", "inferwatch", "serve", "--workers", "2"],
                          capture_output=True, text=True, timeout=30, env=child_env())
    assert done.returncode == 2
    assert "--workers='2'" in done.stderr
    assert "a scrape of /metrics would reach only one of them" in done.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in done.stderr


@pytest.mark.parametrize("environ", [
    {"INFERWATCH_WORKERS": "3"},
    {"INFERWATCH_WORKERS": "3", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_METRICS_EXPORTER": "none"},
    {"INFERWATCH_WORKERS": "3", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
])
def test_several_workers_are_refused_unless_metrics_go_out_over_otlp(environ):
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ=environ)
    assert caught.value.variable == "INFERWATCH_WORKERS"


@pytest.mark.parametrize("environ", [
    {"INFERWATCH_WORKERS": "3", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
    {"INFERWATCH_WORKERS": "3", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics"},
    {"INFERWATCH_WORKERS": "3", "OTEL_SDK_DISABLED": "true"},  # no telemetry: nothing to be inexact
    {"INFERWATCH_WORKERS": "1"},
])
def test_several_workers_start_when_metrics_go_out_over_otlp(environ):
    settings = load_settings({}, environ=environ)
    assert settings.workers == int(environ["INFERWATCH_WORKERS"])
    command = uwsgi_command(settings, "/run/inferwatch-x", [3])
    assert command[command.index("--processes") + 1] == environ["INFERWATCH_WORKERS"]


def test_a_flag_names_itself_when_several_workers_are_refused():
    with pytest.raises(ConfigError) as caught:
        load_settings({"workers": "2"}, environ={})
    assert caught.value.variable == "--workers"


@pytest.fixture
def resource_environ(monkeypatch):
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "K8S_POD_NAME", "INFERWATCH_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch.setenv


@pytest.mark.parametrize(("variable", "value", "instance"), [
    ("K8S_POD_NAME", POD, f"{POD}/2"),
    ("INFERWATCH_PORT", "8123", None),  # the host name and port, then the worker
    ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=blue-1", "blue-1/2"),
])
def test_each_worker_appends_its_number_to_the_instance_an_explicit_one_too(
        resource_environ, variable, value, instance):
    import socket

    resource_environ(variable, value)
    expected = instance or f"{socket.gethostname()}:8123/2"
    assert build_resource(worker=2).attributes["service.instance.id"] == expected
    assert build_resource().attributes["service.instance.id"] == expected.rpartition("/")[0]
