"""The metric contract: OpenTelemetry names in, the dashboards' Prometheus names out.

This table is the single source of truth for the translation described in DESIGN.md. It is
applied in two places and must never be written down a second time:

* in-process, by :func:`to_prometheus`, which the service's ``/metrics`` reader runs on every
  collection before opentelemetry-exporter-prometheus renders the text format;
* in the OpenTelemetry Collector, by the transform-processor statements that
  :mod:`inferwatch.collector_config` renders from this same table (a test checks that
  ``otel-collector/config.yaml`` holds exactly those statements).

Each entry names one OTel instrument, the Prometheus family it becomes, how values are scaled
(ratio -> percent, bytes -> MiB), and which attributes survive as labels (renamed). Attributes not
kept are summed away, so dropping a label never splits or duplicates a series. Prometheus names
are complete: the exporters are given an empty unit, so no suffix is ever appended twice.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)

# OpenTelemetry instrument names the service emits (semantic conventions where one exists).
HTTP_SERVER_DURATION = "http.server.request.duration"
HTTP_SERVER_ACTIVE_REQUESTS = "http.server.active_requests"
HTTP_SERVER_THROUGHPUT = "inferwatch.http.server.throughput"
PREDICTION_SUCCESSES = "inferwatch.prediction.successes"
PREDICTION_FAILURES = "inferwatch.prediction.failures"
SYSTEM_CPU_UTILIZATION = "system.cpu.utilization"
SYSTEM_MEMORY_UTILIZATION = "system.memory.utilization"
SYSTEM_MEMORY_USAGE = "system.memory.usage"
SYSTEM_FILESYSTEM_UTILIZATION = "system.filesystem.utilization"

# Attribute keys used by the mapping.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
URL_SCHEME = "url.scheme"
FILESYSTEM_MOUNTPOINT = "system.filesystem.mountpoint"

# Requests that matched no route carry no http.route; they all share this label value, so
# scanning random paths cannot create new series.
UNMATCHED_ROUTE = "unmatched"

# Bucket edges of the request-duration histogram, in seconds. 2 s is the latency alert's
# threshold and must be an edge, or histogram_quantile() would interpolate across it.
LATENCY_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0,
)

PERCENT_PER_RATIO = 100.0
MIB_PER_BYTE = 1.0 / (1024 * 1024)


class PrometheusType(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Source(enum.Enum):
    """Which part of the OTel data point becomes the Prometheus value."""

    VALUE = "value"  # the point itself (sum, gauge or histogram)
    HISTOGRAM_COUNT = "histogram_count"  # the count of a histogram point, as a monotonic counter


@dataclass(frozen=True)
class MetricMapping:
    otel_name: str
    prometheus_name: str
    prometheus_type: PrometheusType
    description: str
    source: Source = Source.VALUE
    scale: float = 1.0
    # OTel attribute key -> Prometheus label name; every other attribute is summed away.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Prometheus label name -> value used when the attribute is absent on a point.
    label_defaults: Mapping[str, str] = field(default_factory=dict)


_HTTP_LABELS = {
    HTTP_REQUEST_METHOD: "method",
    HTTP_ROUTE: "route",
    HTTP_RESPONSE_STATUS_CODE: "status",
}
_HTTP_DEFAULTS = {"route": UNMATCHED_ROUTE}

MAPPINGS: tuple[MetricMapping, ...] = (
    MetricMapping(
        HTTP_SERVER_DURATION,
        "http_requests_total",
        PrometheusType.COUNTER,
        "HTTP requests served (the request-duration histogram's count).",
        source=Source.HISTOGRAM_COUNT,
        labels=_HTTP_LABELS,
        label_defaults=_HTTP_DEFAULTS,
    ),
    MetricMapping(
        HTTP_SERVER_DURATION,
        "http_request_duration_seconds",
        PrometheusType.HISTOGRAM,
        "HTTP request latency in seconds.",
        labels=_HTTP_LABELS,
        label_defaults=_HTTP_DEFAULTS,
    ),
    MetricMapping(
        HTTP_SERVER_THROUGHPUT,
        "http_requests_throughput",
        PrometheusType.GAUGE,
        "Recent HTTP request rate in requests per second.",
    ),
    MetricMapping(
        HTTP_SERVER_ACTIVE_REQUESTS,
        "active_requests",
        PrometheusType.GAUGE,
        "HTTP requests in flight.",
    ),
    MetricMapping(
        PREDICTION_SUCCESSES,
        "prediction_success_total",
        PrometheusType.COUNTER,
        "Predictions answered by the model.",
    ),
    MetricMapping(
        PREDICTION_FAILURES,
        "prediction_failure_total",
        PrometheusType.COUNTER,
        "Predictions that failed: bad input, model error, upstream down or timed out.",
    ),
    MetricMapping(
        PREDICTION_FAILURES,
        "prediction_failure_by_reason_total",
        PrometheusType.COUNTER,
        "Failed predictions by reason.",
        labels={ERROR_TYPE: "reason"},
    ),
    MetricMapping(
        SYSTEM_CPU_UTILIZATION,
        "system_cpu_usage",
        PrometheusType.GAUGE,
        "Host CPU utilization in percent (0-100).",
        scale=PERCENT_PER_RATIO,
    ),
    MetricMapping(
        SYSTEM_MEMORY_UTILIZATION,
        "system_ram_usage",
        PrometheusType.GAUGE,
        "Host memory used in percent.",
        scale=PERCENT_PER_RATIO,
    ),
    MetricMapping(
        SYSTEM_MEMORY_USAGE,
        "system_memory_usage_mb",
        PrometheusType.GAUGE,
        "Host memory used in MiB.",
        scale=MIB_PER_BYTE,
    ),
    MetricMapping(
        SYSTEM_FILESYSTEM_UTILIZATION,
        "system_disk_usage",
        PrometheusType.GAUGE,
        "Disk used at the configured path, in percent.",
        scale=PERCENT_PER_RATIO,
        labels={FILESYSTEM_MOUNTPOINT: "mountpoint"},
    ),
)

MAPPINGS_BY_OTEL_NAME: dict[str, tuple[MetricMapping, ...]] = {}
for _mapping in MAPPINGS:
    MAPPINGS_BY_OTEL_NAME[_mapping.otel_name] = (
        *MAPPINGS_BY_OTEL_NAME.get(_mapping.otel_name, ()),
        _mapping,
    )


# ---------------------------------------------------------------------------------------------
# In-process translation (for the service's own /metrics)
# ---------------------------------------------------------------------------------------------


def to_prometheus(metrics_data: MetricsData) -> MetricsData:
    """Translate one collection into the contract: mapped metrics only, renamed and scaled.

    The result is still OTel ``MetricsData`` so opentelemetry-exporter-prometheus renders it.
    Metrics without a mapping are dropped: /metrics shows the contract, nothing else.
    """
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=rm.resource,
                scope_metrics=[
                    ScopeMetrics(scope=sm.scope, metrics=translated, schema_url=sm.schema_url)
                    for sm in rm.scope_metrics
                    if (translated := _translate_scope(sm.metrics))
                ],
                schema_url=rm.schema_url,
            )
            for rm in metrics_data.resource_metrics
        ]
    )


def _translate_scope(metrics: Iterable[Metric]) -> list[Metric]:
    return [
        _translate(metric, mapping)
        for metric in metrics
        for mapping in MAPPINGS_BY_OTEL_NAME.get(metric.name, ())
    ]


def _translate(metric: Metric, mapping: MetricMapping) -> Metric:
    points = _relabel(metric.data.data_points, mapping)
    if mapping.source is Source.HISTOGRAM_COUNT:
        data = Sum(
            data_points=[_count_point(p) for p in points],
            aggregation_temporality=AggregationTemporality.CUMULATIVE,
            is_monotonic=True,
        )
    elif mapping.prometheus_type is PrometheusType.HISTOGRAM:
        data = Histogram(
            data_points=[_scale_histogram(p, mapping.scale) for p in points],
            aggregation_temporality=metric.data.aggregation_temporality,
        )
    elif mapping.prometheus_type is PrometheusType.COUNTER:
        data = Sum(
            data_points=[_scale_number(p, mapping.scale) for p in points],
            aggregation_temporality=metric.data.aggregation_temporality,
            is_monotonic=True,
        )
    else:
        data = Gauge(data_points=[_scale_number(p, mapping.scale) for p in points])
    return Metric(
        name=mapping.prometheus_name,
        description=mapping.description,
        unit="",
        data=data,
    )


def _relabel(points, mapping: MetricMapping) -> list:
    """Rename kept attributes, fill defaults, and sum points that now share a label set."""
    merged: dict[tuple, object] = {}
    for point in points:
        labels = dict(mapping.label_defaults)
        for key, label in mapping.labels.items():
            value = point.attributes.get(key)
            if value is not None:
                labels[label] = str(value)
        key = tuple(sorted(labels.items()))
        relabelled = replace(point, attributes=labels)
        previous = merged.get(key)
        merged[key] = relabelled if previous is None else _merge(previous, relabelled)
    return list(merged.values())


def _merge(a, b):
    if isinstance(a, HistogramDataPoint):
        return replace(
            a,
            count=a.count + b.count,
            sum=a.sum + b.sum,
            bucket_counts=[x + y for x, y in zip(a.bucket_counts, b.bucket_counts)],
            min=min(a.min, b.min),
            max=max(a.max, b.max),
            start_time_unix_nano=min(a.start_time_unix_nano, b.start_time_unix_nano),
            time_unix_nano=max(a.time_unix_nano, b.time_unix_nano),
        )
    return replace(
        a,
        value=a.value + b.value,
        start_time_unix_nano=min(a.start_time_unix_nano or 0, b.start_time_unix_nano or 0),
        time_unix_nano=max(a.time_unix_nano, b.time_unix_nano),
    )


def _count_point(point: HistogramDataPoint) -> NumberDataPoint:
    return NumberDataPoint(
        attributes=point.attributes,
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        value=point.count,
    )


def _scale_number(point: NumberDataPoint, scale: float) -> NumberDataPoint:
    return point if scale == 1.0 else replace(point, value=point.value * scale)


def _scale_histogram(point: HistogramDataPoint, scale: float) -> HistogramDataPoint:
    # Integral edges print as "2", not "2.0", exactly as the collector's Go exporter prints
    # them, so the le label values agree on both scrape paths.
    bounds = tuple(_plain_number(b * scale) for b in point.explicit_bounds)
    return replace(point, explicit_bounds=bounds, sum=point.sum * scale)


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
