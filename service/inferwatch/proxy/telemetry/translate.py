"""The metric contract applied in-process, for the service's own ``/metrics``.

:func:`to_prometheus` translates one OpenTelemetry collection into the contract of
:data:`inferwatch.contract.metrics.MAPPINGS`: mapped metrics only, renamed, relabelled and
scaled, exactly as the collector's generated transform does. The reader in
:mod:`inferwatch.proxy.telemetry` runs it on every collection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

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

from inferwatch.contract.metrics import MAPPINGS_BY_OTEL_NAME, MetricMapping, PrometheusType, Source


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
            exemplars=[*(a.exemplars or ()), *(b.exemplars or ())],
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
    if scale == 1.0:
        return replace(point, explicit_bounds=bounds)
    exemplars = [replace(e, value=e.value * scale) for e in point.exemplars or ()]
    return replace(point, explicit_bounds=bounds, sum=point.sum * scale, exemplars=exemplars)


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
