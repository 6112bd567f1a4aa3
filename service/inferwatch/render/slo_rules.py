"""The SLO rule group: recording rules and burn-rate alerts rendered from the SLO specs.

From each :class:`~inferwatch.contract.slo.SLO` in
:attr:`~inferwatch.contract.thresholds.Thresholds.slos`, as Sloth generates them, per model
(the model labels) and through the selector and the marker (:mod:`inferwatch.render.promql`):

* ``slo:sli_error:ratio_rate<window>{slo, window}``: the share of bad events among valid ones
  over every window an alert reads (5m, 30m, 1h, 2h, 6h, 1d, 3d), from the raw counters; one
  name per window, the window also a label, so a dashboard can select them all;
* ``slo:sli_error:rate5m`` and ``slo:sli_valid:rate5m``: bad and valid events per second over
  5m, and from them ``slo:sli_error:ratio_rate30d`` (the period): every 5m rate the rules
  recorded over the period, summed, bad over valid. Weighted by traffic (a quiet night counts
  as little as it served), cheap (two recorded series, not a month of raw samples per
  evaluation), and an instance replaced within the period still counts;
* ``slo:period_error_budget_remaining:ratio{slo}``: 1 - the period's error ratio / the error
  budget. 1 is untouched, 0 spent, below 0 overspent;
* one alert per SLO and severity (``PredictionAvailabilityBudgetBurn``, ...) with
  ``severity="page"`` or ``"ticket"``: two window pairs each, a pair firing when both of its
  windows burn faster than ``factor * (1 - objective)``, written out in the rule. The value is
  the burn rate over the long window; the text names the SLO and says how fast each window
  burns and how much of the budget is left.

Everything lives in one group, recording rules first, so an alert reads the ratios of the same
evaluation. The rules are in ``observability/prometheus/rules/slo.yml``, tested by
``observability/prometheus/tests/slo_test.yml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from inferwatch.contract.slo import (
    BURN_RATE_WINDOWS,
    PAGE,
    SEVERITIES,
    SLO,
    AvailabilitySLI,
    BurnRateWindow,
    LatencySLI,
    seconds,
)
from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
from inferwatch.render import promql
from inferwatch.render.rules import AlertRule, RecordingRule, RuleGroup, jaeger_slow_traces_url
from inferwatch.render.text import number, percent

GROUP = "inferwatch.slo"
FILE_NAME = "slo.yml"

ERROR_RATIO = "slo:sli_error:ratio_rate"  # + the window
RATE_WINDOW = "5m"  # the window of the rates the period is summed from
ERROR_RATE = f"slo:sli_error:rate{RATE_WINDOW}"
VALID_RATE = f"slo:sli_valid:rate{RATE_WINDOW}"
BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"

VALUE = "{{ $value | printf \"%.1f\" }}"
JOB = "{{ $labels.job }}"


def alert_windows() -> tuple[str, ...]:
    """Every window an alert reads, shortest first: 5m, 30m, 1h, 2h, 6h, 1d, 3d."""
    windows = {w for window in BURN_RATE_WINDOWS for w in (window.long, window.short)}
    return tuple(sorted(windows, key=seconds))


def error_ratio(window: str) -> str:
    """The recorded error ratio over ``window``: ``slo:sli_error:ratio_rate1h``."""
    return ERROR_RATIO + window


def _selected(slo: SLO) -> str:
    return f'{{slo="{slo.name}"}}'


def _labels(slo: SLO, window: str | None = None) -> dict[str, str]:
    return {"slo": slo.name, **({"window": window} if window else {})}


# ---------------------------------------------------------------------------------------------
# The SLIs: bad and valid events per second, per model, from the raw counters
# ---------------------------------------------------------------------------------------------


def _availability_events(t: Thresholds, sli: AvailabilitySLI, window: str) -> tuple[str, str]:
    """(bad, good) per second: failures whose reason is not the client's, and successes."""
    not_client = f'reason!~"{"|".join(sli.client_error_reasons)}"'
    bad = promql.sum_rate_within(t, "prediction_failure_by_reason_total", window, not_client)
    good = promql.sum_rate_within(t, "prediction_success_total", window)
    return bad, good


def bucket_at(seconds: float) -> str:
    """The ``le`` matcher of the histogram bucket whose upper edge is ``seconds``.

    A whole number of seconds is spelled two ways: ``le="2"`` in the text format (the proxy's
    /metrics) and ``le="2.0"`` in OpenMetrics and protobuf (the collector's exporter). Prometheus
    3 stores ``le="2.0"`` whatever was scraped (it normalises the label of classic histograms on
    ingestion); Prometheus 2.x, which a seed-style setup may still run, stores the label as
    scraped. Both spellings are matched, so the latency SLI reads the bucket on either.
    """
    text = number(seconds)
    if float(seconds).is_integer():
        return f'le=~"{text}|{text}\\\\.0"'
    return f'le="{text}"'


def _latency_events(t: Thresholds, sli: LatencySLI, window: str) -> tuple[str, str]:
    """(valid, good) per second: the requests counted, and those within the threshold (the
    bucket at the threshold, an edge of the histogram, so nothing is interpolated)."""
    matchers = (sli.routes, sli.statuses)
    valid = promql.sum_rate_within(t, "http_request_duration_seconds_count", window, *matchers)
    good = promql.sum_rate_within(t, "http_request_duration_seconds_bucket", window, *matchers,
                                  bucket_at(sli.threshold_seconds))
    return valid, good


def error_ratio_expr(t: Thresholds, slo: SLO, window: str) -> str:
    """Bad events over valid events in ``window``, per model; NaN while there are none."""
    if isinstance(slo.sli, AvailabilitySLI):
        bad, good = _availability_events(t, slo.sli, window)
        return f"{bad}\n/\n({good} + {bad})"
    valid, good = _latency_events(t, slo.sli, window)
    return f"({valid} - {good})\n/\n{valid}"


def _rates(t: Thresholds, slo: SLO) -> tuple[str, str]:
    """(bad, valid) events per second over RATE_WINDOW."""
    if isinstance(slo.sli, AvailabilitySLI):
        bad, good = _availability_events(t, slo.sli, RATE_WINDOW)
        return bad, f"{good} + {bad}"
    valid, good = _latency_events(t, slo.sli, RATE_WINDOW)
    return f"{valid} - {good}", valid


# ---------------------------------------------------------------------------------------------
# Recording rules
# ---------------------------------------------------------------------------------------------


def recording_rules(t: Thresholds, slo: SLO) -> tuple[RecordingRule, ...]:
    bad, valid = _rates(t, slo)
    budget = number(slo.error_budget)
    period = slo.period
    return (
        *(RecordingRule(error_ratio(window), error_ratio_expr(t, slo, window), _labels(slo, window))
          for window in alert_windows()),
        RecordingRule(ERROR_RATE, bad, _labels(slo, RATE_WINDOW)),
        RecordingRule(VALID_RATE, valid, _labels(slo, RATE_WINDOW)),
        RecordingRule(error_ratio(period),
                      f"sum_over_time({ERROR_RATE}{_selected(slo)}[{period}])\n/\n"
                      f"sum_over_time({VALID_RATE}{_selected(slo)}[{period}])",
                      _labels(slo, period)),
        RecordingRule(BUDGET_REMAINING, f"1 - {error_ratio(period)}{_selected(slo)} / {budget}", _labels(slo, period)),
    )


# ---------------------------------------------------------------------------------------------
# Burn-rate alerts
# ---------------------------------------------------------------------------------------------


def _over(slo: SLO, window: str, factor: float) -> str:
    return (f"max without (window) ({error_ratio(window)}{_selected(slo)} "
            f"> ({number(factor)} * {number(slo.error_budget)}))")


def burn_rate_expr(slo: SLO, windows: Iterable[BurnRateWindow]) -> str:
    """Either pair of windows burning faster than its factor; the value is the long window's burn rate."""
    pairs = [
        f"(\n  {_over(slo, w.long, w.factor(slo.period))}\n  and\n  {_over(slo, w.short, w.factor(slo.period))}\n)"
        f" / {number(slo.error_budget)}"
        for w in windows
    ]
    return "\nor\n".join(pairs)


def _model_query(t: Thresholds, expr: str, fmt: str) -> str:
    """A template snippet that asks Prometheus ``expr`` for the alert's model, printed with ``fmt``
    (a Go template pipeline), or "?" when there is no answer."""
    matchers = ", ".join(f"{label}=%q" for label in t.model_labels)
    args = " ".join(f"$labels.{label}" for label in t.model_labels)
    query = expr.replace("MODEL", matchers).replace('"', '\\"')
    return f'{{{{ with printf "{query}" {args} | query }}}}{{{{ . | first | value | {fmt} }}}}{{{{ else }}}}?{{{{ end }}}}'


def _burn_rate_now(t: Thresholds, slo: SLO, window: str) -> str:
    expr = f'{error_ratio(window)}{{slo="{slo.name}", MODEL}} / {number(slo.error_budget)}'
    return _model_query(t, expr, 'printf "%.1f"') + "x"


def budget_remaining_now(t: Thresholds, slo: SLO) -> str:
    return _model_query(t, f'{BUDGET_REMAINING}{{slo="{slo.name}", MODEL}}', "humanizePercentage")


def objective_text(slo: SLO) -> str:
    """The objective in words: "99% of valid predictions succeed over 30d"."""
    share = f"{percent(slo.objective)}%"
    if isinstance(slo.sli, AvailabilitySLI):
        return f"{share} of valid predictions succeed over {slo.period}"
    return f"{share} of predictions are answered within {number(slo.sli.threshold_seconds)}s over {slo.period}"


def _pairs_text(slo: SLO, windows: Iterable[BurnRateWindow]) -> str:
    return " or ".join(f"{number(w.factor(slo.period))}x over both {w.long} and {w.short}" for w in windows)


def burn_rate_alert(t: Thresholds, slo: SLO, severity: str) -> AlertRule:
    windows = [w for w in BURN_RATE_WINDOWS if w.severity == severity]
    now = "; ".join(
        f"{_burn_rate_now(t, slo, w.long)} over {w.long} and {_burn_rate_now(t, slo, w.short)} over {w.short}"
        for w in windows)
    verb = "pages" if severity == PAGE else "opens a ticket"
    if isinstance(slo.sli, AvailabilitySLI):
        why = ("prediction_failure_by_reason_total says why (the client's errors, such as invalid JSON, "
               "do not count).")
    else:
        slow = jaeger_slow_traces_url(replace(t, latency_seconds=slo.sli.threshold_seconds), JOB)
        why = f"Slow traces: {slow}"
    return AlertRule(
        slo.alert,
        burn_rate_expr(slo, windows),
        "0s",  # the short window already stops a blip from firing, and clears the alert soon after
        {"severity": severity, "component": "prediction", "slo": slo.name},
        {
            "summary": f"{slo.name.capitalize()} SLO: error budget burning "
                       f"{'fast' if severity == PAGE else 'steadily'}",
            "description": (
                f"SLO {slo.name} of {JOB} ({objective_text(slo)}): the error budget burns {VALUE}x as fast "
                f"as the objective allows. Burn rate {now}; this {verb} above {_pairs_text(slo, windows)}. "
                f"Error budget left over {slo.period}: {budget_remaining_now(t, slo)}. {why}"),
            "value": f"{VALUE}x",
            "budget_remaining": budget_remaining_now(t, slo),
        },
    )


def slo_group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    rules: list[RecordingRule | AlertRule] = []
    for slo in t.slos:
        rules.extend(recording_rules(t, slo))
        rules.extend(burn_rate_alert(t, slo, severity) for severity in SEVERITIES)
    return RuleGroup(GROUP, FILE_NAME, tuple(rules))


def retention(t: Thresholds = THRESHOLDS) -> str:
    """The Prometheus retention the SLO rules need: the longest period (the budget reads it whole)."""
    return max((slo.period for slo in t.slos), key=seconds, default="15d")
