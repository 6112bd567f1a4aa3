"""Histograms aggregated where they are recorded, for series the caller binds once.

An SDK histogram's ``record(value, attributes)`` builds a ``Measurement``, cleans and copies its
attributes, hashes them to find the series, asks the exemplar filter and only then adds the
value: about 10 us for a GenAI series of eight attributes on this project's machine, most of
a chat answer's telemetry (three records). The GenAI series are known when they are first
needed and then reused, so the work that depends on the attributes is done once:
:meth:`AggregatedHistogram.series` binds an attribute set to a :class:`HistogramSeries`, whose
:meth:`~HistogramSeries.record` takes a lock and adds the value to its buckets (under 1 us).

The points reach every reader as the SDK's own would: :meth:`AggregatedHistograms.install`
wraps the meter provider's collection of each reader, so each collection (the Prometheus
reader's for /metrics and for the OTLP export it feeds, an in-memory reader in a test) carries
one ``Histogram`` metric per instrument in the meter's scope, with cumulative points built
exactly as the SDK's explicit-bucket aggregation builds them (value ``<=`` a boundary falls in
its bucket; count, sum, min, max; negative and non-finite values are dropped). A test compares
both on the same values.

Cumulative only: :func:`~inferwatch.proxy.telemetry.setup.setup_telemetry` uses these only when
no reader wants delta temporality or exponential buckets, and the SDK's own histograms
otherwise (:class:`SdkHistograms`, the same interface).

``gen_ai.client.operation.duration`` keeps exemplars as the latency histograms do: a value is an
exemplar when the exemplar filter lets it (the collector keeps its trace), the newest of each
bucket kept across collections.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from opentelemetry.context import get_current
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import ExemplarFilter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from inferwatch.proxy.telemetry.exemplars import LatestPerBucketReservoir


class HistogramSeries:
    """One attribute set of an :class:`AggregatedHistogram`: its buckets, count, sum, min and max."""

    __slots__ = ("_attributes", "_boundaries", "_counts", "_exemplars", "_filter", "_lock", "_max", "_min",
                 "_start_ns", "_sum")

    def __init__(self, attributes: Mapping, boundaries: tuple[float, ...], lock: threading.Lock,
                 exemplar_filter: ExemplarFilter | None) -> None:
        self._attributes = dict(attributes)
        self._boundaries = boundaries
        self._lock = lock
        self._filter = exemplar_filter
        self._counts = [0] * (len(boundaries) + 1)
        self._sum = 0
        self._min = math.inf
        self._max = -math.inf
        self._start_ns = time.time_ns()
        # The newest exemplar of each bucket, kept across collections, as on the latency histograms.
        self._exemplars = LatestPerBucketReservoir(boundaries) if exemplar_filter is not None else None

    def record(self, value: float) -> None:
        if not 0 <= value < math.inf:  # the SDK drops negative and non-finite values too (NaN fails here)
            return
        bucket = bisect_left(self._boundaries, value)
        with self._lock:
            self._counts[bucket] += 1
            self._sum += value
            if value < self._min:
                self._min = value
            if value > self._max:
                self._max = value
        if self._exemplars is not None:
            now, context = time.time_ns(), get_current()
            if self._filter.should_sample(value, now, None, context):
                self._exemplars.offer(value, now, None, context)

    def point(self, now_ns: int) -> HistogramDataPoint | None:
        """The cumulative point; None before the first value (the SDK has no series then either)."""
        with self._lock:
            counts, total, low, high = list(self._counts), self._sum, self._min, self._max
        count = sum(counts)
        if not count:
            return None
        exemplars = self._exemplars.collect(self._attributes) if self._exemplars is not None else []
        return HistogramDataPoint(
            attributes=self._attributes, start_time_unix_nano=self._start_ns, time_unix_nano=now_ns, count=count,
            sum=total, bucket_counts=counts, explicit_bounds=self._boundaries, min=low, max=high,
            exemplars=exemplars)


class AggregatedHistogram:
    """A histogram instrument whose series are bound once (:meth:`series`) and then recorded to."""

    def __init__(self, name: str, unit: str, description: str, boundaries: Sequence[float],
                 exemplar_filter: ExemplarFilter | None = None) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._boundaries = tuple(boundaries)
        finite = all(math.isfinite(b) for b in self._boundaries)
        if not finite or list(self._boundaries) != sorted(set(self._boundaries)):
            raise ValueError(f"{name}: boundaries must be finite and strictly increasing")
        self._filter = exemplar_filter
        self._lock = threading.Lock()
        self._series: dict[frozenset, HistogramSeries] = {}

    def series(self, attributes: Mapping) -> HistogramSeries:
        """The series of ``attributes`` (the same object for equal attributes); keep it and record to it."""
        key = frozenset(attributes.items())
        series = self._series.get(key)
        if series is None:
            with self._lock:
                series = self._series.setdefault(
                    key, HistogramSeries(attributes, self._boundaries, self._lock, self._filter))
        return series

    def metric(self, now_ns: int) -> Metric | None:
        points = [point for series in list(self._series.values()) if (point := series.point(now_ns)) is not None]
        if not points:
            return None
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE))


class AggregatedHistograms:
    """The aggregated histograms of one meter scope, added to every collection of the readers."""

    def __init__(self, scope: InstrumentationScope, resource: Resource, exemplar_filter: ExemplarFilter) -> None:
        self._scope = scope
        self._resource = resource
        self._filter = exemplar_filter
        self._instruments: list[AggregatedHistogram] = []

    def create_histogram(self, name: str, *, unit: str, description: str, boundaries: Sequence[float],
                         exemplars: bool = False) -> AggregatedHistogram:
        instrument = AggregatedHistogram(name, unit, description, boundaries, self._filter if exemplars else None)
        self._instruments.append(instrument)
        return instrument

    def install(self, readers: Sequence[MetricReader]) -> None:
        """Make every collection of ``readers`` (registered with a meter provider) carry these histograms.

        The provider gives each reader its collection function through the SDK's
        ``_set_collect_callback`` (the SDK is pinned in requirements.lock); it is wrapped here, so
        a reader needs no change and cannot be missed.
        """
        for reader in readers:
            reader._set_collect_callback(partial(self._collect, reader._collect))

    def _collect(self, collect: Callable[..., MetricsData | None], reader: MetricReader,
                 timeout_millis: float = 10_000) -> MetricsData | None:
        return self.merged(collect(reader, timeout_millis=timeout_millis))

    def merged(self, metrics_data: MetricsData | None) -> MetricsData | None:
        """``metrics_data`` with these histograms in their scope (a new scope entry when it has none)."""
        now = time.time_ns()
        added = [metric for instrument in self._instruments if (metric := instrument.metric(now)) is not None]
        if not added:
            return metrics_data
        if metrics_data is None or not metrics_data.resource_metrics:
            return MetricsData([ResourceMetrics(self._resource, [ScopeMetrics(self._scope, added, "")], "")])
        first, *rest = metrics_data.resource_metrics
        scopes = list(first.scope_metrics)
        for index, scope_metrics in enumerate(scopes):
            if scope_metrics.scope.name == self._scope.name and scope_metrics.scope.version == self._scope.version:
                scopes[index] = ScopeMetrics(scope_metrics.scope, [*scope_metrics.metrics, *added],
                                             scope_metrics.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(self._scope, added, ""))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


class _SdkSeries:
    __slots__ = ("_attributes", "_histogram")

    def __init__(self, histogram, attributes: Mapping) -> None:
        self._histogram = histogram
        self._attributes = dict(attributes)

    def record(self, value: float) -> None:
        self._histogram.record(value, self._attributes)


class _SdkHistogram:
    def __init__(self, histogram) -> None:
        self._histogram = histogram

    def series(self, attributes: Mapping) -> _SdkSeries:
        return _SdkSeries(self._histogram, attributes)


class SdkHistograms:
    """The same interface over the SDK's own histograms (a reader wants delta or exponential buckets)."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def create_histogram(self, name: str, *, unit: str, description: str, boundaries: Sequence[float],
                         exemplars: bool = False) -> _SdkHistogram:
        return _SdkHistogram(self._meter.create_histogram(name, unit=unit, description=description,
                                                          explicit_bucket_boundaries_advisory=list(boundaries)))
