"""After a known mix of requests, /metrics equals the truth, to the request."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


from inferwatch.contract.metrics import LATENCY_BUCKETS_SECONDS
from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import parse_samples, total, tunable_payload

CONTRACT = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "http_requests_throughput": "gauge",
    "active_requests": "gauge",
    "prediction_success_total": "counter",
    "prediction_failure_total": "counter",
    "system_cpu_usage": "gauge",
    "system_ram_usage": "gauge",
    "system_memory_usage_mb": "gauge",
    "system_disk_usage": "gauge",
}


def families(text: str) -> dict[str, str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in text_string_to_metric_families(text)
    }


def test_the_contract_is_on_metrics_and_counters_start_at_zero(proxy):
    text = proxy.metrics_text()
    found = families(text)
    for name, kind in CONTRACT.items():
        if name in ("http_requests_total", "http_request_duration_seconds"):
            continue  # labelled by method/route/status: their series appear with the first request
        assert found.get(name) == kind, f"{name} missing or of the wrong type in:\n{text}"
    samples = parse_samples(text)
    # A proxy told nothing about its model labels it unknown; both counters carry the same labels.
    model = (("model", "unknown"), ("model_version", "unknown"))
    assert samples[("prediction_success_total", model)] == 0
    assert samples[("prediction_failure_total", model)] == 0
    assert samples[("active_requests", ())] == 0
    assert 0 <= samples[("system_cpu_usage", ())] <= 100
    assert 0 < samples[("system_ram_usage", ())] <= 100
    assert samples[("system_memory_usage_mb", ())] > 1
    for suffix in ("_seconds_seconds", "_percent", "_MB", "_ratio", "otel_scope"):
        assert suffix not in text


def test_a_known_mix_of_requests_is_counted_exactly(app_proxy):
    proxy = app_proxy
    bad_json = {"data": b"{", "headers": {"Content-Type": "application/json"}}
    rejected = {"json": {"dataframe_split": {"columns": ["Pregnancies"], "data": [[1.0]]}}}
    wrong_type = {"data": b"x", "headers": {"Content-Type": "text/plain"}}
    plan = [("/predict", {"json": SEED_EXAMPLE})] * 12 + [("/invocations", {"json": SEED_EXAMPLE})] * 5
    plan += [("/predict", bad_json)] * 3 + [("/predict", rejected)] * 2 + [("/invocations", wrong_type)] * 4
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda step: proxy.post(step[0], **step[1]).status_code, plan))
    for _ in range(3):  # operational endpoints are never counted
        proxy.get("/metrics")
        proxy.get("/healthz")
        proxy.get("/readyz")
    assert proxy.get("/nope").status_code == 404
    assert statuses.count(200) == 17 and statuses.count(400) == 5 and statuses.count(415) == 4

    samples = proxy.metrics()
    n = len(plan) + 1
    assert total(samples, "http_requests_total") == n
    assert total(samples, "http_request_duration_seconds_count") == n
    assert total(samples, "http_requests_total", route="/predict", status="200") == 12
    assert total(samples, "http_requests_total", route="/invocations", status="200") == 5
    assert total(samples, "http_requests_total", route="/predict", status="400") == 5
    assert total(samples, "http_requests_total", route="/invocations", status="415") == 4
    assert total(samples, "http_requests_total", route="unmatched", status="404", method="GET") == 1
    assert total(samples, "prediction_success_total") == 17
    assert total(samples, "prediction_failure_total") == 9
    assert total(samples, "prediction_failure_by_reason_total", reason="invalid_json") == 3
    assert total(samples, "prediction_failure_by_reason_total", reason="model_rejected") == 2
    assert total(samples, "prediction_failure_by_reason_total", reason="unsupported_media_type") == 4
    assert samples[("active_requests", ())] == 0
    edges = {
        float(dict(labels)["le"])
        for (name, labels), _ in samples.items()
        if name == "http_request_duration_seconds_bucket"
    }
    assert edges == {*LATENCY_BUCKETS_SECONDS, float("inf")}
    assert 'le="2"' in proxy.metrics_text()


def test_200_concurrent_requests_at_concurrency_16_all_succeed_and_are_counted(proxy):
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: proxy.post(json=SEED_EXAMPLE).status_code, range(200)))
    assert statuses == [200] * 200
    samples = proxy.metrics()
    assert total(samples, "http_requests_total") == 200
    assert total(samples, "prediction_success_total") == 200
    assert total(samples, "prediction_failure_total") == 0
    assert samples[("active_requests", ())] == 0


def test_throughput_gauge_reports_the_recent_request_rate(proxy):
    import time

    deadline = time.monotonic() + 3
    sent = 0
    while time.monotonic() < deadline and sent < 400:
        proxy.post(json=SEED_EXAMPLE)
        sent += 1
    rate = proxy.metrics()[("http_requests_throughput", ())]
    assert rate > 0, "no rate after a burst of requests"
    time.sleep(1.5)  # the sampler runs every 0.5 s in tests: idle windows bring it back to 0
    assert proxy.metrics()[("http_requests_throughput", ())] == 0


def test_a_mix_with_model_errors_and_upstream_timeouts_is_counted_exactly(tunable_mlflow, start_app):
    proxy = start_app(tunable_mlflow.url, read_timeout=0.5)
    plan = (
        [tunable_payload(rows=3)] * 10  # successes
        + [tunable_payload(fail=True)] * 4  # the model raises: MLflow 400
        + [tunable_payload(delay_s=1.0)] * 3  # beyond the read timeout: 504
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda payload: proxy.post(json=payload).status_code, plan))
    assert sorted(statuses) == [200] * 10 + [400] * 4 + [504] * 3

    samples = proxy.metrics()
    assert total(samples, "http_requests_total") == 17
    assert total(samples, "http_requests_total", status="504") == 3
    assert total(samples, "prediction_success_total") == 10
    assert total(samples, "prediction_failure_total") == 7
    assert total(samples, "prediction_failure_by_reason_total", reason="model_rejected") == 4
    assert total(samples, "prediction_failure_by_reason_total", reason="upstream_timeout") == 3
    assert samples[("active_requests", ())] == 0


def test_a_scrape_sees_the_request_in_flight_but_never_itself(tunable_mlflow, start_proxy):
    proxy = start_proxy(tunable_mlflow.url)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(proxy.post, json=tunable_payload(delay_s=1.5))
        in_flight = 0.0
        for _ in range(40):  # up to 1 s for the request to arrive
            in_flight = proxy.metrics()[("active_requests", ())]
            if in_flight:
                break
            threading.Event().wait(0.025)
        assert in_flight == 1
        assert slow.result().status_code == 200
    assert proxy.metrics()[("active_requests", ())] == 0
