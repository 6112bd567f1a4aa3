"""``/metrics``: the Prometheus text format, or OpenMetrics with exemplars when the scraper asks.

opentelemetry-exporter-prometheus turns each collection into prometheus_client metric families
but drops the exemplars, and prometheus_client writes exemplars only in the OpenMetrics format.
This module bridges the two without touching the exporter's rendering:

* :class:`BucketExemplars` is handed every collection (already translated to the contract) by
  the reader in :mod:`inferwatch.proxy.telemetry`, and files each histogram exemplar under its
  series and bucket (``le``), as the exporter will name them;
* :class:`ExemplarCollector` is what the proxy's registry scrapes: it runs the exporter's
  families (which makes the reader collect) and puts each bucket's exemplar on its sample,
  ``{trace_id="<32 hex>", span_id="<16 hex>"}`` with the measured value and time;
* :func:`render` picks the format from the ``Accept`` header: OpenMetrics 1.0.0 when the scraper
  lists ``application/openmetrics-text`` (Prometheus does by default), else the text format,
  byte for byte what the exporter alone writes (the text format has no exemplars).

Scrapes are serialised: the exporter's collector is not safe to run twice at once.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable

from opentelemetry.sdk.metrics.export import Histogram, MetricsData
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Exemplar as PrometheusExemplar

OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"
TRACE_ID_LABEL = "trace_id"  # the name Grafana's exemplarTraceIdDestinations looks for
SPAN_ID_LABEL = "span_id"

BucketKey = tuple[str, tuple[tuple[str, str], ...], str]  # (histogram name, labels without le, le)


class BucketExemplars:
    """The exemplars of the latest collection, by histogram series and bucket."""

    def __init__(self) -> None:
        self._by_bucket: dict[BucketKey, PrometheusExemplar] = {}

    def record(self, metrics_data: MetricsData) -> None:
        by_bucket = {}
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if isinstance(metric.data, Histogram):
                        for point in metric.data.data_points:
                            for key, exemplar in _point_exemplars(metric.name, point):
                                newest = by_bucket.get(key)
                                if newest is None or exemplar.timestamp >= newest.timestamp:
                                    by_bucket[key] = exemplar
        self._by_bucket = by_bucket

    def take(self) -> dict[BucketKey, PrometheusExemplar]:
        by_bucket, self._by_bucket = self._by_bucket, {}
        return by_bucket


def _point_exemplars(name: str, point) -> Iterable[tuple[BucketKey, PrometheusExemplar]]:
    labels = tuple(sorted((key, str(value)) for key, value in point.attributes.items()))
    bounds = point.explicit_bounds
    for exemplar in point.exemplars or ():
        if exemplar.trace_id is None or exemplar.span_id is None:
            continue
        index = bisect_left(bounds, exemplar.value)
        le = f"{bounds[index]}" if index < len(bounds) else "+Inf"  # as the exporter names buckets
        yield (name, labels, le), PrometheusExemplar(
            {TRACE_ID_LABEL: format(exemplar.trace_id, "032x"), SPAN_ID_LABEL: format(exemplar.span_id, "016x")},
            exemplar.value,
            exemplar.time_unix_nano / 1e9,
        )


class ExemplarCollector:
    """The exporter's metric families from ``source``, with each bucket's exemplar attached."""

    def __init__(self, source: CollectorRegistry, exemplars: BucketExemplars):
        self._source = source
        self._exemplars = exemplars
        self._lock = threading.Lock()

    def describe(self) -> list:
        return []  # registering must not collect: the reader is not attached to a provider yet

    def collect(self) -> list:
        with self._lock:
            families = list(self._source.collect())
            exemplars = self._exemplars.take()
        if exemplars:
            for family in families:
                if family.type == "histogram":
                    family.samples = [_with_exemplar(family.name, sample, exemplars) for sample in family.samples]
        return families


def _with_exemplar(name: str, sample, exemplars: dict[BucketKey, PrometheusExemplar]):
    if not sample.name.endswith("_bucket"):
        return sample
    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
    exemplar = exemplars.get((name, labels, sample.labels.get("le", "")))
    return sample if exemplar is None else sample._replace(exemplar=exemplar)


def wants_openmetrics(accept: str) -> bool:
    """Whether an ``Accept`` header lists OpenMetrics (with a q above 0)."""
    for item in accept.split(","):
        media_type, *parameters = item.split(";")
        if media_type.strip().lower() != OPENMETRICS_MEDIA_TYPE:
            continue
        quality = next((p.split("=", 1)[1] for p in parameters if p.strip().startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            return True
    return False


def render(registry: CollectorRegistry, accept: str) -> tuple[str, bytes]:
    """(content type, body) of a scrape that sent ``accept``."""
    if wants_openmetrics(accept):
        return openmetrics.CONTENT_TYPE_LATEST, openmetrics.generate_latest(registry)
    return CONTENT_TYPE_LATEST, generate_latest(registry)
