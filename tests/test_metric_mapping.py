"""The in-process translation to the metric contract, on data from a real OTel SDK."""

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from inferwatch.contract import metrics as mm
from inferwatch.proxy.telemetry.translate import to_prometheus


def collect(record):
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name=mm.HTTP_SERVER_DURATION,
                    aggregation=ExplicitBucketHistogramAggregation(mm.LATENCY_BUCKETS_SECONDS))],
    )
    record(provider.get_meter("test"))
    translated = to_prometheus(reader.get_metrics_data())
    provider.shutdown()
    return {m.name: m for rm in translated.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_dropped_attributes_are_summed_and_unknown_routes_collapse():
    def record(meter):
        duration = meter.create_histogram(mm.HTTP_SERVER_DURATION, unit="s")
        for scheme in ("http", "https"):
            duration.record(0.1, {"http.request.method": "POST", "http.route": "/predict",
                                  "http.response.status_code": 200, "url.scheme": scheme})
        duration.record(3.0, {"http.request.method": "GET", "http.response.status_code": 404})
        duration.record(0.2, {"http.request.method": "GET", "http.response.status_code": 404,
                              "network.protocol.version": "1.0"})

    metrics = collect(record)
    counts = {tuple(sorted(p.attributes.items())): p.value for p in metrics["http_requests_total"].data.data_points}
    assert counts == {
        (("method", "POST"), ("route", "/predict"), ("status", "200")): 2,
        (("method", "GET"), ("route", "unmatched"), ("status", "404")): 2,
    }
    assert isinstance(metrics["http_requests_total"].data, Sum) and metrics["http_requests_total"].data.is_monotonic
    histogram = metrics["http_request_duration_seconds"].data
    assert isinstance(histogram, Histogram)
    unmatched = next(p for p in histogram.data_points if p.attributes["route"] == "unmatched")
    assert unmatched.count == 2 and unmatched.sum == 3.2
    assert 2 in unmatched.explicit_bounds and all(type(b) is int for b in unmatched.explicit_bounds if b >= 1 and b % 1 == 0)
    assert sum(unmatched.bucket_counts) == 2


def test_units_are_converted_and_never_left_for_suffixes():
    def record(meter):
        meter.create_observable_gauge(mm.SYSTEM_CPU_UTILIZATION, [lambda _: [Observation(0.25)]], unit="1")
        meter.create_observable_up_down_counter(
            mm.SYSTEM_MEMORY_USAGE, [lambda _: [Observation(3 * 1024 * 1024, {"system.memory.state": "used"})]], unit="By")
        meter.create_counter("some.unmapped.metric").add(1)

    metrics = collect(record)
    assert set(metrics) == {"system_cpu_usage", "system_memory_usage_mb"}
    assert metrics["system_cpu_usage"].data.data_points[0].value == 25.0
    memory = metrics["system_memory_usage_mb"]
    assert isinstance(memory.data, Gauge)
    assert memory.data.data_points[0].value == 3.0
    assert memory.data.data_points[0].attributes == {}
    assert all(m.unit == "" for m in metrics.values())


def test_one_instrument_can_feed_two_families():
    def record(meter):
        failures = meter.create_counter(mm.PREDICTION_FAILURES)
        failures.add(2, {"error.type": "invalid_json"})
        failures.add(1, {"error.type": "upstream_timeout"})

    metrics = collect(record)
    assert [p.value for p in metrics["prediction_failure_total"].data.data_points] == [3]
    by_reason = {p.attributes["reason"]: p.value for p in metrics["prediction_failure_by_reason_total"].data.data_points}
    assert by_reason == {"invalid_json": 2, "upstream_timeout": 1}


def test_every_contract_name_has_exactly_one_mapping():
    names = [m.prometheus_name for m in mm.MAPPINGS]
    assert len(names) == len(set(names))
    assert {"http_requests_total", "http_request_duration_seconds", "http_requests_throughput", "active_requests",
            "prediction_success_total", "prediction_failure_total", "system_cpu_usage", "system_ram_usage",
            "system_memory_usage_mb", "system_disk_usage"} <= set(names)
