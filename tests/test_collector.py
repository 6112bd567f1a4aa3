"""The real collector between the real service and Prometheus: parity, traces, faults."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Callable

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.proxy.telemetry.setup import otlp_shares_the_prometheus_collection
from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import otlp_env, parse_samples, total, tunable_payload

IGNORED_LABELS = {"job", "instance"}


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll until ``condition()`` is truthy; return its value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def contract_shape(text: str) -> dict[str, tuple[str, frozenset]]:
    """Family name -> (type, the label sets of its samples), job/instance and target_info ignored."""
    shape = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("target", "target_info"):
            continue
        label_sets = frozenset(
            (sample.name, frozenset(set(sample.labels) - IGNORED_LABELS)) for sample in family.samples
        )
        shape[family.name] = (family.type, label_sets)
    return shape


def without_ignored_labels(samples: dict) -> dict:
    merged: dict = {}
    for (name, labels), value in samples.items():
        kept = tuple((k, v) for k, v in labels if k not in IGNORED_LABELS)
        merged[(name, kept)] = merged.get((name, kept), 0.0) + value
    return merged


def bucket_edges(text: str) -> set[str]:
    return {
        sample.labels["le"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }


def send_known_mix(proxy) -> int:
    statuses = [proxy.post(json=SEED_EXAMPLE).status_code for _ in range(7)]
    statuses += [proxy.post("/invocations", json=SEED_EXAMPLE).status_code for _ in range(3)]
    statuses += [proxy.post(data=b"{", headers={"Content-Type": "application/json"}).status_code for _ in range(2)]
    statuses.append(proxy.post(json={"dataframe_split": {"columns": ["Age"], "data": [[1.0]]}}).status_code)
    statuses.append(proxy.post(data=b"x", headers={"Content-Type": "text/plain"}).status_code)
    statuses.append(requests.get(proxy.url + "/no/such/route", timeout=5).status_code)
    assert sorted(statuses) == [200] * 10 + [400] * 3 + [404, 415]
    return len(statuses)


def test_service_metrics_and_collector_metrics_are_the_same_contract(mlflow_server, demo_model, start_collector,
                                                                     start_proxy):
    collector = start_collector()
    proxy = start_proxy(mlflow_server.url, env=otlp_env(collector), model_dir=str(demo_model))
    n = send_known_mix(proxy)
    answer = proxy.post(json=SEED_EXAMPLE)  # one more, with its true label: the feedback series
    feedback = {"token": answer.headers["Inferwatch-Feedback-Token"], "label": answer.json()["predictions"][0]}
    assert proxy.post("/feedback", json=feedback).status_code == 200
    assert proxy.post("/feedback", json={"token": "forged", "label": 1}).status_code == 400
    n += 3

    def collector_complete():
        text = collector.metrics_text()
        return text if total(parse_samples(text), "http_requests_total") == n else None

    via_collector = wait_for(collector_complete, timeout=20, what=f"{n} requests on the collector")
    direct = proxy.metrics_text()

    assert contract_shape(via_collector).keys() == contract_shape(direct).keys()
    for family, (kind, label_sets) in contract_shape(direct).items():
        assert contract_shape(via_collector)[family] == (kind, label_sets), family
    assert bucket_edges(via_collector) == bucket_edges(direct)
    assert '"2"' in json.dumps(sorted(bucket_edges(direct)))

    for samples in (without_ignored_labels(parse_samples(direct)), without_ignored_labels(parse_samples(via_collector))):
        assert total(samples, "http_requests_total") == n
        assert total(samples, "http_request_duration_seconds_count") == n
        assert total(samples, "http_requests_total", route="/predict", status="200") == 8
        assert total(samples, "http_requests_total", route="/invocations", status="200") == 3
        assert total(samples, "http_requests_total", route="unmatched", status="404") == 1
        assert total(samples, "prediction_success_total") == 11
        # Model quality: 11 answered rows, one more the model rejected (7 signature columns missing).
        assert total(samples, "model_info", model="diabetes-demo", model_version="1", reference="true") == 1
        assert total(samples, "model_input_rows_total", model="diabetes-demo") == 12
        assert total(samples, "model_feature_bin_total", feature="Glucose") == 11
        assert math.isclose(total(samples, "model_feature_expected_share", feature="Glucose"), 1)
        assert total(samples, "model_prediction_bin_total") == 11
        assert total(samples, "model_input_violation_total", kind="missing") == 7
        assert total(samples, "model_feedback_labels_total") == 1
        assert total(samples, "model_feedback_correct_total") == 1
        assert total(samples, "model_feedback_rejected_total", reason="invalid_token") == 1
        assert total(samples, "prediction_failure_total") == 4
        assert total(samples, "prediction_failure_by_reason_total", reason="invalid_json") == 2
        assert total(samples, "prediction_failure_by_reason_total", reason="model_rejected") == 1
        assert total(samples, "prediction_failure_by_reason_total", reason="unsupported_media_type") == 1
        assert total(samples, "active_requests") == 0
        # The MLflow calls: 11 answered; MLflow itself refused the rejected row and the two bad
        # JSON bodies (400) and the unsupported content type (415); the 404 never reached it.
        assert total(samples, "upstream_request_duration_seconds_count", status="200") == 11
        assert total(samples, "upstream_request_duration_seconds_count", status="400") == 3
        assert total(samples, "upstream_request_duration_seconds_count", status="415") == 1
        assert total(samples, "upstream_request_duration_seconds_count") == 15
        assert 0 <= total(samples, "system_cpu_usage") <= 100
        assert total(samples, "system_memory_usage_mb") > 1


def target_infos(text: str) -> list[dict[str, str]]:
    return [sample.labels for family in text_string_to_metric_families(text) if family.name == "target_info"
            for sample in family.samples]


def test_both_paths_carry_the_marker_and_the_collector_names_job_and_instance_after_the_service(
    mlflow_server, start_collector, start_proxy
):
    """The rules recognise inferwatch by target_info{telemetry_distro_name="inferwatch"}: it is on
    /metrics (Prometheus adds the scrape job and target) and on the collector's exporter, where
    job is service.name and instance is service.instance.id (host name and port by default).
    start_collector comes first: the proxy stops first and flushes to a live collector."""
    collector = start_collector()
    proxy = start_proxy(mlflow_server.url, env={**otlp_env(collector), "OTEL_SERVICE_NAME": "fraud-model"})
    [direct] = target_infos(proxy.metrics_text())
    assert direct["telemetry_distro_name"] == "inferwatch" and direct["service_name"] == "fraud-model"
    [via_collector] = wait_for(lambda: target_infos(collector.metrics_text()), 20, what="target_info on the collector")
    assert via_collector["telemetry_distro_name"] == "inferwatch"
    assert (via_collector["job"], via_collector["instance"]) == ("fraud-model", f"{socket.gethostname()}:{proxy.port}")
    samples = parse_samples(collector.metrics_text())
    assert {dict(labels)["job"] for (name, labels) in samples if name == "prediction_success_total"} == {"fraud-model"}


def spans_in(path) -> list[dict]:
    spans = []
    if not path.exists():
        return spans
    for line in path.read_text().splitlines():
        for resource in json.loads(line).get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                spans.extend(scope.get("spans", []))
    return spans


def access_lines(proxy) -> list[dict]:
    return [json.loads(line) for line in proxy.log_lines() if '"inferwatch.access"' in line]


@pytest.mark.slow  # a collector's tail sampling waits out its decision window on slow requests
def test_errors_and_slow_traces_are_always_kept_and_ordinary_ones_sampled_away(
    tunable_mlflow, start_collector, start_proxy
):
    collector = start_collector(OTELCOL_TRACES_SAMPLE_PERCENT="0", OTELCOL_TRACES_DECISION_WAIT="1s")
    proxy = start_proxy(tunable_mlflow.url, env=otlp_env(collector))
    # Ordinary: sampled away at 0 %, except the one the proxy marks as an exemplar (the first
    # request of each second); the others follow within that second.
    for _ in range(3):
        assert proxy.post(json=tunable_payload()).status_code == 200
    assert proxy.post(json=tunable_payload(fail=True)).status_code == 400  # an error trace
    assert proxy.post(json=tunable_payload(delay_s=2.2)).status_code == 200  # slower than the 2 s threshold

    lines = wait_for(lambda: len(lines := access_lines(proxy)) == 5 and lines, 5, what="log lines")
    *ordinary, failed, slow = lines
    assert (failed["outcome"], slow["duration_s"] > 2, ordinary[0]["duration_s"] < 2) == ("model_rejected", True, True)
    wanted = {failed["trace_id"], slow["trace_id"]}
    wait_for(lambda: {s["traceId"] for s in spans_in(collector.traces_file)} >= wanted, timeout=30,
             what="the error and the slow trace in the trace file")

    by_trace: dict[str, list[dict]] = {}
    for span in spans_in(collector.traces_file):
        by_trace.setdefault(span["traceId"], []).append(span)
    marked = {span["traceId"] for span in spans_in(collector.traces_file)
              if {"key": "inferwatch.exemplar", "value": {"boolValue": True}} in span.get("attributes", [])}
    assert ordinary[0]["trace_id"] in marked, "the first request of the second is marked"
    assert set(by_trace) == wanted | marked, "an ordinary, unmarked trace was kept"
    assert {o["trace_id"] for o in ordinary} - marked, "every ordinary request was marked"
    for trace_spans in by_trace.values():
        server = next(s for s in trace_spans if s["name"] == "POST /predict")
        client = next(s for s in trace_spans if s["name"] == "POST")
        assert client["parentSpanId"] == server["spanId"]
    error_server = next(s for s in by_trace[failed["trace_id"]] if s["name"] == "POST /predict")
    assert error_server["status"]["code"] == 2  # STATUS_CODE_ERROR


@pytest.mark.slow  # kills the collector under load and waits for the exports to resume
def test_a_collector_outage_is_invisible_to_clients_and_counters_resume_cumulative(
    mlflow_server, start_collector, start_proxy
):
    collector = start_collector()
    proxy = start_proxy(mlflow_server.url, env=otlp_env(collector))
    for _ in range(20):
        assert proxy.post(json=SEED_EXAMPLE).status_code == 200
    wait_for(lambda: total(parse_samples(collector.metrics_text()), "prediction_success_total") == 20, 20,
             what="20 successes on the collector")

    collector.stop()
    rss_before = psutil.Process(proxy.process.process.pid).memory_info().rss
    latencies = []
    for _ in range(60):
        began = time.perf_counter()
        assert proxy.post(json=SEED_EXAMPLE).status_code == 200
        latencies.append(time.perf_counter() - began)
        time.sleep(0.02)  # spread over a few export intervals
    rss_after = psutil.Process(proxy.process.process.pid).memory_info().rss
    assert max(latencies) < 1.0, "a request waited on the telemetry export"
    assert rss_after - rss_before < 50 * 1024 * 1024

    collector.start()
    samples = wait_for(
        lambda: (s := parse_samples(collector.metrics_text())) and total(s, "prediction_success_total") == 80 and s,
        timeout=20, what="80 successes on the restarted collector",
    )
    assert total(samples, "http_requests_total") == 80  # cumulative: nothing lost, nothing counted twice
    assert total(proxy.metrics(), "http_requests_total") == 80


@pytest.mark.parametrize("environ, shared", [
    ({}, True),
    ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Cumulative"}, True),
    ({"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "explicit_bucket_histogram"}, True),
    ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}, False),
    ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}, False),
    ({"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"}, False),
])
def test_otlp_export_shares_the_prometheus_collection_unless_the_exporter_wants_other_data(environ, shared):
    assert otlp_shares_the_prometheus_collection(environ) is shared
