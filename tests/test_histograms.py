"""The GenAI histograms aggregated where they are recorded (inferwatch.proxy.telemetry.histograms).

They replace the SDK's histogram on the request path, so they must give what the SDK gives: the
same points for the same values, in every reader's collection, exact under concurrent records.
"""

from __future__ import annotations

import math
import random
import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from inferwatch.contract import genai as g
from inferwatch.proxy.telemetry import METER_NAME, setup_telemetry
from inferwatch.proxy.telemetry.exemplars import ExemplarMarks, KeptTraceExemplarFilter
from inferwatch.proxy.telemetry.histograms import AggregatedHistograms, SdkHistograms

ATTRIBUTES = [{"gen_ai.operation.name": "chat", "gen_ai.token.type": kind} for kind in ("input", "output")]


def values() -> list[float]:
    """Boundaries themselves, between them, beyond the last, ints and floats; and what the SDK drops."""
    rng = random.Random(7)
    kept = [*g.TOKEN_USAGE_BUCKETS, 0, 0.5, 3, 5.5, 10**9, *(rng.randint(0, 70_000) for _ in range(300)),
            *(rng.uniform(0, 5000) for _ in range(300))]
    return [*kept, -1, math.nan, math.inf]


def aggregated(reader: InMemoryMetricReader) -> AggregatedHistograms:
    """Aggregated histograms installed on a reader of a meter provider of their own."""
    MeterProvider(metric_readers=[reader])
    histograms = AggregatedHistograms(InstrumentationScope(METER_NAME), Resource.create({}),
                                      KeptTraceExemplarFilter(60, ExemplarMarks()))
    histograms.install([reader])
    return histograms


def points(reader: InMemoryMetricReader, name: str) -> dict[frozenset, object]:
    data = reader.get_metrics_data()
    found = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    assert metric.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
                    found.update({frozenset(p.attributes.items()): p for p in metric.data.data_points})
    return found


def test_the_same_values_give_the_points_the_sdk_gives():
    sdk_reader, own_reader = InMemoryMetricReader(), InMemoryMetricReader()
    sdk = SdkHistograms(MeterProvider(metric_readers=[sdk_reader]).get_meter(METER_NAME))
    own = aggregated(own_reader)
    for histograms in (sdk, own):
        instrument = histograms.create_histogram(g.GEN_AI_CLIENT_TOKEN_USAGE, unit="{token}", description="d",
                                                 boundaries=g.TOKEN_USAGE_BUCKETS)
        series = [instrument.series(attributes) for attributes in ATTRIBUTES]
        for index, value in enumerate(values()):
            series[index % 2].record(value)
    expected, got = points(sdk_reader, g.GEN_AI_CLIENT_TOKEN_USAGE), points(own_reader, g.GEN_AI_CLIENT_TOKEN_USAGE)
    assert set(got) == set(expected) and len(got) == 2
    for key, point in expected.items():
        mine = got[key]
        assert (mine.count, mine.sum, list(mine.bucket_counts), list(mine.explicit_bounds), mine.min, mine.max) == (
            point.count, point.sum, list(point.bucket_counts), list(point.explicit_bounds), point.min, point.max)
        assert mine.start_time_unix_nano <= mine.time_unix_nano


VALUES = (0.0625, 0.5, 2.0)  # one per bucket of (0.1, 1.0)


def test_counts_stay_exact_when_threads_record_at_once():
    reader = InMemoryMetricReader()
    series = aggregated(reader).create_histogram("h", unit="s", description="d", boundaries=(0.1, 1.0)).series({})
    start = threading.Barrier(8)

    def record() -> None:
        start.wait()
        for i in range(5000):
            series.record(VALUES[i % 3])

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [point] = points(reader, "h").values()
    assert point.count == 40_000 and list(point.bucket_counts) == [13_336, 13_336, 13_328]
    assert point.sum == 8 * sum(VALUES[i % 3] for i in range(5000))  # binary fractions: exact in any order


def test_a_series_without_values_has_no_point_and_the_scope_is_the_meters():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter(METER_NAME).create_counter("requests").add(1)
    histograms = AggregatedHistograms(InstrumentationScope(METER_NAME), Resource.create({}),
                                      KeptTraceExemplarFilter(60, ExemplarMarks()))
    histograms.install([reader])
    instrument = histograms.create_histogram("h", unit="s", description="d", boundaries=(1.0,))
    instrument.series({"a": "1"})
    assert points(reader, "h") == {}
    instrument.series({"a": "1"}).record(2.0)
    [resource_metrics] = reader.get_metrics_data().resource_metrics
    [scope_metrics] = resource_metrics.scope_metrics  # the counter's scope, now with the histogram in it
    assert scope_metrics.scope.name == METER_NAME
    assert sorted(m.name for m in scope_metrics.metrics) == ["h", "requests"]


def test_only_a_value_whose_trace_is_kept_becomes_an_exemplar():
    reader, marks = InMemoryMetricReader(), ExemplarMarks(interval_s=3600)
    MeterProvider(metric_readers=[reader])
    histograms = AggregatedHistograms(InstrumentationScope(METER_NAME), Resource.create({}),
                                      KeptTraceExemplarFilter(60, marks))
    histograms.install([reader])
    with_exemplars = histograms.create_histogram("d", unit="s", description="d", boundaries=(1.0,), exemplars=True)
    tokens = histograms.create_histogram("t", unit="{token}", description="d", boundaries=(1.0,))
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("marked") as marked:
        assert marks.mark(marked)
        with_exemplars.series({}).record(0.5)
        tokens.series({}).record(0.5)
    with tracer.start_as_current_span("ordinary"):
        with_exemplars.series({}).record(2.0)  # fast, not failed, not marked: its trace may be dropped
    [point] = points(reader, "d").values()
    assert [(e.value, e.trace_id) for e in point.exemplars] == [(0.5, marked.get_span_context().trace_id)]
    [point] = points(reader, "t").values()
    assert point.exemplars == []
    assert [e.value for e in points(reader, "d")[frozenset()].exemplars] == [0.5]  # kept after a collection


def test_the_sdks_histograms_are_used_when_the_otlp_export_wants_delta():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none",
               "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}
    telemetry = setup_telemetry(environ=environ)
    try:
        assert isinstance(telemetry.histograms, SdkHistograms)
    finally:
        telemetry.shutdown()
    telemetry = setup_telemetry(environ={})
    try:
        assert isinstance(telemetry.histograms, AggregatedHistograms)
    finally:
        telemetry.shutdown()
