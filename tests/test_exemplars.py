"""Exemplars: recorded only for traces the collector keeps, on both scrape paths, resolving in Jaeger.

In-process (a real Flask app in front of the real tunable MLflow model, the real OTel SDK):
which requests become exemplars, that they survive collections, that /metrics writes them in
OpenMetrics only and that the plain text format is byte for byte what the exporter alone
writes. End to end (real MLflow, proxy, collector, Jaeger, Prometheus with exemplar storage),
once per scrape path: every exemplar Prometheus stored on the latency buckets names a trace that
Jaeger has, with the server span and its MLflow client child, although the collector samples 0 %
of ordinary traces.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from alerting_stack import PrometheusServer, poll, start_prometheus
from inferwatch.contract.metrics import HTTP_CLIENT_DURATION, HTTP_SERVER_DURATION
from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.config import Settings
from inferwatch.contract.spans import EXEMPLAR as ATTR_EXEMPLAR
from inferwatch.proxy.telemetry.exemplars import ExemplarMarks
from inferwatch.proxy.telemetry.exposition import render, wants_openmetrics
from inferwatch.proxy.telemetry import setup_telemetry
from inferwatch.proxy.telemetry.translate import to_prometheus
from support import otlp_env, tunable_payload

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends
SLOW_S = 2.2  # above the 2 s latency threshold, inside the (2, 2.5] bucket


class PlainMappedReader(PrometheusMetricReader):
    """The proxy's /metrics reader as it was before exemplars: the contract, rendered by the exporter."""

    def _receive_metrics(self, metrics_data, timeout_millis=10_000, **kwargs):
        if metrics_data is not None:
            super()._receive_metrics(to_prometheus(metrics_data), timeout_millis, **kwargs)


@pytest.fixture
def app_with_readers(tunable_mlflow):
    spans = InMemorySpanExporter()
    memory = InMemoryMetricReader()
    plain_registry = CollectorRegistry(auto_describe=True)
    plain = PlainMappedReader(disable_target_info=False, scope_info_enabled=False, registry=plain_registry)
    telemetry = setup_telemetry(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[memory, plain],
                                environ={}, exemplar_marks=ExemplarMarks(interval_s=3600))
    app = create_app(Settings(upstream=tunable_mlflow.url), telemetry, start_sampler=False)
    yield app, telemetry, memory, plain_registry, spans
    close_app(app)


def exemplar_trace_ids(reader: InMemoryMetricReader, name: str) -> set[str]:
    data = reader.get_metrics_data()
    return {
        format(exemplar.trace_id, "032x")
        for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics if metric.name == name
        for point in metric.data.data_points for exemplar in point.exemplars
    }


def test_only_failed_slow_and_marked_requests_become_exemplars_and_they_outlive_a_collection(app_with_readers):
    app, _telemetry, memory, _plain, spans = app_with_readers
    client = app.test_client()
    trace_of = lambda response: response.headers["traceparent"].split("-")[1]  # noqa: E731
    marked = client.post("/predict", json=tunable_payload())  # the first request of the interval is marked
    ordinary = client.post("/predict", json=tunable_payload())
    rejected = client.post("/predict", json=tunable_payload(fail=True))
    slow = client.post("/predict", json=tunable_payload(delay_s=SLOW_S))
    # Each bucket keeps its newest exemplar: bad JSON goes to a series of its own (the other route);
    # nested this deep, the proxy refuses it itself.
    nested = b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}"
    bad_json = client.post("/invocations", data=nested, content_type="application/json")
    assert [r.status_code for r in (marked, ordinary, rejected, slow, bad_json)] == [200, 200, 400, 200, 400]

    [marked_span] = [s for s in spans.get_finished_spans() if s.attributes.get(ATTR_EXEMPLAR)]
    assert format(marked_span.context.trace_id, "032x") == trace_of(marked)
    expected = {trace_of(r) for r in (marked, rejected, slow, bad_json)}
    assert exemplar_trace_ids(memory, HTTP_SERVER_DURATION) == expected
    # The MLflow call's histogram: the calls that were made (bad JSON never reaches MLflow).
    assert exemplar_trace_ids(memory, HTTP_CLIENT_DURATION) == expected - {trace_of(bad_json)}
    # The SDK's reservoir would be empty now; ours still has the newest exemplar of each bucket.
    assert exemplar_trace_ids(memory, HTTP_SERVER_DURATION) == expected
    assert trace_of(ordinary) not in exemplar_trace_ids(memory, HTTP_SERVER_DURATION)


def test_metrics_writes_exemplars_in_openmetrics_and_the_text_format_is_what_the_exporter_writes(app_with_readers):
    app, telemetry, _memory, plain_registry, _spans = app_with_readers
    client = app.test_client()
    client.post("/predict", json=tunable_payload())
    slow = client.post("/predict", json=tunable_payload(delay_s=SLOW_S))
    client.post("/nope")

    content_type, text = render(telemetry.registry, "")
    assert content_type.startswith("text/plain") and b" # {" not in text
    assert text == generate_latest(plain_registry), "the text format changed for scrapers that do not ask for OpenMetrics"

    content_type, body = render(telemetry.registry, PROMETHEUS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    buckets = {}
    for family in openmetrics_families(body.decode()):
        for sample in family.samples:
            if sample.exemplar is not None:
                assert sample.name.endswith("_bucket"), f"an exemplar on {sample.name}: only buckets have them"
                buckets.setdefault(sample.name, {})[sample.labels["le"]] = sample.exemplar
    slow_trace = slow.headers["traceparent"].split("-")[1]
    for name in ("http_request_duration_seconds_bucket", "upstream_request_duration_seconds_bucket"):
        exemplar = buckets[name]["2.5"]
        assert exemplar.labels["trace_id"] == slow_trace and len(exemplar.labels["span_id"]) == 16
        assert 2 < exemplar.value <= 2.5 and abs(float(exemplar.timestamp) - time.time()) < 60


def test_the_metrics_endpoint_follows_the_accept_header(app_proxy):
    plain = app_proxy.get("/metrics")
    assert plain.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert "# EOF" not in plain.text and "# TYPE active_requests gauge" in plain.text
    negotiated = app_proxy.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert negotiated.headers["Content-Type"].startswith("application/openmetrics-text")
    assert negotiated.text.endswith("# EOF\n")
    assert wants_openmetrics("application/openmetrics-text") and wants_openmetrics("text/plain, application/openmetrics-text;q=0.2")
    assert not wants_openmetrics("application/openmetrics-text;q=0, text/plain") and not wants_openmetrics("*/*")


# ---------------------------------------------------------------------------------------------
# End to end: Prometheus stores the exemplars, Jaeger has their traces
# ---------------------------------------------------------------------------------------------


def prometheus_config(target: str) -> str:
    return ("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: inferwatch\n    honor_labels: true\n"
            f"    static_configs:\n      - targets: ['{target}']\n")


def stored_exemplars(prometheus: PrometheusServer, metric: str, since: float) -> list[tuple[dict, dict]]:
    """(series labels, exemplar) of every exemplar Prometheus stored for ``metric`` since ``since``."""
    return [(series["seriesLabels"], exemplar)
            for series in prometheus.exemplars(f'{metric}{{job="inferwatch"}}', since, time.time() + 1)
            for exemplar in series["exemplars"]]


def assert_resolves(jaeger, trace_id: str, span_id: str):
    """Jaeger has the trace: the proxy's server span with the MLflow call as its child."""
    found = poll(lambda: jaeger.query.trace(trace_id), 30, f"trace {trace_id} in Jaeger")
    server = found.server
    assert server.name == "POST /predict" and server.service == "inferwatch", found
    [client] = [s for s in found.spans if s.parent_id == server.span_id and s.kind == "client"]
    assert client.name == "POST"
    assert span_id in {server.span_id, client.span_id}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("scrape", ["collector", "service"])
def test_every_exemplar_prometheus_stores_leads_to_a_kept_trace_with_its_mlflow_call(
    scrape, tunable_mlflow, start_collector, start_proxy, start_jaeger, tmp_path
):
    jaeger = start_jaeger()
    # Ordinary traces are all sampled away: only error, slow and marked traces reach Jaeger.
    collector = start_collector(jaeger, OTELCOL_TRACES_SAMPLE_PERCENT="0", OTELCOL_TRACES_DECISION_WAIT="1s")
    proxy = start_proxy(tunable_mlflow.url, env=otlp_env(collector))
    target = f"127.0.0.1:{collector.ports.metrics}" if scrape == "collector" else f"127.0.0.1:{proxy.port}"
    prometheus = start_prometheus(tmp_path / "prometheus", prometheus_config(target), rules={})
    try:
        began = time.time()
        fast = [proxy.post(json=tunable_payload()) for _ in range(10)]
        failed = [proxy.post(json=tunable_payload(fail=True)) for _ in range(2)]
        with ThreadPoolExecutor(3) as pool:
            slow = list(pool.map(lambda _: proxy.post(json=tunable_payload(delay_s=SLOW_S)), range(3)))
        assert [r.status_code for r in fast + slow] == [200] * 13 and [r.status_code for r in failed] == [400] * 2
        slow_traces = {r.headers["traceparent"].split("-")[1] for r in slow}
        failed_traces = {r.headers["traceparent"].split("-")[1] for r in failed}

        def slow_and_failed_stored():
            found = stored_exemplars(prometheus, "http_request_duration_seconds_bucket", began)
            traces = {e["labels"]["trace_id"] for _, e in found}
            return found if traces & slow_traces and traces & failed_traces else None

        exemplars = poll(slow_and_failed_stored, 45, "exemplars of a slow and a failed request in Prometheus")
        upstream = stored_exemplars(prometheus, "upstream_request_duration_seconds_bucket", began)
        assert upstream, "no exemplar on the MLflow call's histogram"
        for series, exemplar in exemplars + upstream:
            trace_id = exemplar["labels"]["trace_id"]
            if series["le"] == "+Inf" or float(series["le"]) >= 2:
                assert trace_id in slow_traces, (series, exemplar)
            if series.get("status") == "400" and series["__name__"].startswith("http_request"):
                assert trace_id in failed_traces, (series, exemplar)
            # Not only the promised ones: every exemplar resolves, even at a 0 % sample ...
            found = assert_resolves(jaeger, trace_id, exemplar["labels"]["span_id"])
            if trace_id not in slow_traces | failed_traces:  # ... an ordinary one because it was marked
                assert found.server.tags.get("inferwatch.exemplar") is True, found.server.tags
        text = requests.get(proxy.url + "/metrics", timeout=10)  # a plain scrape beside Prometheus's
        assert text.headers["Content-Type"].startswith("text/plain") and "# {" not in text.text
    finally:
        prometheus.stop()
