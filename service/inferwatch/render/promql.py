"""PromQL that reads inferwatch's series and nobody else's: the selector and the marker, in one place.

Every query the renderers write (alert and recording rules, dashboard panels and variables,
Grafana-managed rules) selects series through these helpers, so
:attr:`~inferwatch.contract.thresholds.Thresholds.selector` and
:attr:`~inferwatch.contract.thresholds.Thresholds.model_labels` are applied everywhere alike.

Two things decide which series a query reads:

* the marker tells inferwatch apart: a series is kept only ``and on (job, instance)``
  ``target_info{telemetry_distro_name="inferwatch"}``, which every inferwatch process publishes
  from start-up on both scrape paths (:data:`inferwatch.contract.metrics.MARKER_METRIC`). Another
  job's ``up``, ``system_cpu_usage`` or ``http_requests_total`` has no such marker and never
  fires an alert or mixes into a sum, whatever its job is called;
* the selector narrows: its label matchers go on every series selected, the marker included.

For example, ``sum_rate(THRESHOLDS, "prediction_failure_total", "5m")`` with the defaults::

    sum by (job) (rate(prediction_failure_total[5m]) and on (job, instance) target_info{telemetry_distro_name="inferwatch"})
"""

from __future__ import annotations

from collections.abc import Iterable

from inferwatch.contract.metrics import DISTRO_NAME, MARKER_LABEL, MARKER_METRIC, TARGET_LABELS
from inferwatch.contract.thresholds import Thresholds


def labels(names: Iterable[str]) -> str:
    return ", ".join(names)


def matchers(t: Thresholds, *extra: str) -> str:
    """``{selector, extra...}``; empty when there is nothing to match."""
    parts = [part for part in (t.selector, *extra) if part]
    return "{" + ", ".join(parts) + "}" if parts else ""


def series(t: Thresholds, metric: str, *extra: str) -> str:
    """``metric`` narrowed by the selector and ``extra`` matchers (not yet joined to the marker)."""
    return metric + matchers(t, *extra)


def marker(t: Thresholds, *extra: str) -> str:
    """inferwatch's marker series: one per inferwatch process (job, instance) that reports now."""
    return MARKER_METRIC + "{" + ", ".join(
        part for part in (f'{MARKER_LABEL}="{DISTRO_NAME}"', t.selector, *extra) if part) + "}"


def on_target() -> str:
    return f"on ({labels(TARGET_LABELS)})"


def of_inferwatch(t: Thresholds, expr: str) -> str:
    """``expr``'s series that belong to an inferwatch process (``expr`` keeps job and instance)."""
    return f"{expr} and {on_target()} {marker(t)}"


def rate(t: Thresholds, metric: str, window: str, *extra: str) -> str:
    """Per-series rate of an inferwatch counter (or bucket), other jobs' same-named ones left out."""
    return of_inferwatch(t, f"rate({series(t, metric, *extra)}[{window}])")


def increase(t: Thresholds, metric: str, window: str, *extra: str) -> str:
    """Per-series increase of an inferwatch counter over ``window``, other jobs' left out."""
    return of_inferwatch(t, f"increase({series(t, metric, *extra)}[{window}])")


def gauge(t: Thresholds, metric: str, *extra: str) -> str:
    """An inferwatch gauge's series, other jobs' same-named ones left out."""
    return of_inferwatch(t, series(t, metric, *extra))


def on(t: Thresholds, *extra: str) -> str:
    """``on (model labels, extra...)``: matching one model's series (and ``extra``) in a join."""
    return f"on ({labels((*t.model_labels, *extra))})"


def by(t: Thresholds, *extra: str) -> str:
    """``by (model labels, extra...)``: the grouping every per-model expression uses."""
    return f"by ({labels((*t.model_labels, *extra))})"


def sum_rate(t: Thresholds, metric: str, window: str, *extra: str, by_extra: Iterable[str] = ()) -> str:
    """Rate of an inferwatch counter per model (and ``by_extra``), every instance summed."""
    return f"sum {by(t, *by_extra)} ({rate(t, metric, window, *extra)})"


def of_inferwatch_within(t: Thresholds, expr: str, window: str) -> str:
    """Like :func:`of_inferwatch`, for a rate over a long ``window``: keeps the series of every
    inferwatch process that reported within it, so an instance replaced an hour ago (a rolling
    update, a new pod name) still counts for the 1d and 3d windows of the SLOs."""
    return f"{expr} and {on_target()} present_over_time({marker(t)}[{window}])"


def sum_rate_within(t: Thresholds, metric: str, window: str, *extra: str) -> str:
    """Rate of an inferwatch counter per model over ``window``, every instance that reported
    within ``window`` summed (:func:`of_inferwatch_within`)."""
    return f"sum {by(t)} ({of_inferwatch_within(t, f'rate({series(t, metric, *extra)}[{window}])', window)})"
