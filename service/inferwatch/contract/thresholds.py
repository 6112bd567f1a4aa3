"""Alert thresholds and the notification policy: every number the alerts use, defined once.

:data:`THRESHOLDS` holds each threshold, ``for`` duration, window and selector the alerts use,
with a comment naming the alert it drives; :class:`RouteTimings` is the seed's notification
policy (grouping and repetition of alert emails). Everything that shows or evaluates one of these
values is rendered from here by :mod:`inferwatch.render`: the Prometheus rule files (expression
and alert text), the Alertmanager configuration, the Grafana panels and Grafana-managed rules,
and the collector's slow-trace threshold is checked against it. After editing a value::

    python -m inferwatch.render --write

Data only: nothing else of inferwatch is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Every threshold, duration and selector the alert rules use."""

    # Every rule reads only series of this selector: the scrape job in prometheus.yml, the same
    # whether Prometheus scrapes the collector or the service directly.
    selector: str = 'job="inferwatch"'

    # HighCPUUsage: host CPU in percent (system_cpu_usage, 0-100) above this ...
    cpu_percent: float = 80
    # ... for this long (the seed's "more than 1 minute").
    cpu_for: str = "1m"

    # HighPredictionLatency: this quantile of request latency ...
    latency_quantile: float = 0.95
    # ... above this many seconds; must be a bucket edge of http_request_duration_seconds
    # (contract.metrics.LATENCY_BUCKETS_SECONDS), or histogram_quantile would interpolate across it.
    latency_seconds: float = 2
    # ... measured over this window ...
    latency_window: str = "5m"
    # ... for this long. The window already smooths; this stops one slow burst from paging.
    latency_for: str = "2m"
    # ... counting only the prediction routes (scanners' 404s are fast and would hide slowness).
    latency_routes: str = 'route=~"/predict|/invocations"'

    # HighPredictionFailureRate: failed share of predictions above this ...
    failure_ratio: float = 0.10
    # ... over this window ...
    failure_window: str = "5m"
    # ... for this long.
    failure_for: str = "2m"

    # InferwatchDown: the scrape target (collector or service) has not answered for this long.
    down_for: str = "1m"
    # InferwatchMetricsAbsent: no contract series for this long (service gone behind the collector,
    # or no target at all).
    absent_for: str = "2m"

    # HighPredictionLatency's pointer to the slow traces: a Jaeger search for this service's
    # traces at least latency_seconds long (the collector keeps every trace that slow).
    jaeger_url: str = "http://localhost:16686"
    trace_service: str = "inferwatch"


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class RouteTimings:
    """Alertmanager's grouping and repetition (the seed's notification policy)."""

    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
