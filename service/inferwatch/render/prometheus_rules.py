"""The Prometheus rule files, rendered from the thresholds.

One file per rule group under ``observability/prometheus/rules/`` (recording rules, host,
predictions, availability, and the SLOs' from :mod:`inferwatch.render.slo_rules`): every expression and alert text reads its numbers from
:data:`inferwatch.contract.thresholds.THRESHOLDS`, so a threshold is never written down twice,
and selects its series through :mod:`inferwatch.render.promql` (the selector, the per-model
labels, the marker that keeps other jobs' same-named series out).
``python -m inferwatch.render --check`` (and ``tests/test_prometheus_rules.py``) fail when a
committed file differs from the rendering.

Tests shorten the ``for`` durations (``rule_files(for_overrides=...)``); nothing else can be
overridden, so the expressions a test runs are the committed ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
from inferwatch.render import promql
from inferwatch.render.text import duration, number, percent, to_yaml

RULES_DIR = Path("observability/prometheus/rules")


class UnknownAlertError(ValueError):
    """A ``for`` override names an alert no rule defines."""

    def __init__(self, names: Iterable[str], known: Iterable[str]):
        self.names = sorted(names)
        self.known = sorted(known)
        super().__init__(f"no alert named {', '.join(self.names)}; alerts are {', '.join(self.known)}")



@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    def as_yaml(self) -> dict:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_yaml(self) -> dict:
        return {"record": self.record, "expr": self.expr, **({"labels": dict(self.labels)} if self.labels else {})}


@dataclass(frozen=True)
class RuleGroup:
    name: str
    file_name: str
    rules: tuple[AlertRule | RecordingRule, ...]


# Prometheus template snippets used in the annotations.
VALUE = "{{ $value | humanize }}"
VALUE_DURATION = "{{ $value | humanizeDuration }}"
VALUE_PERCENTAGE = "{{ $value | humanizePercentage }}"
JOB = "{{ $labels.job }}"
INSTANCE = "{{ $labels.instance }}"

# Window of the recording rules that no alert shares (request rate, latency buckets).
DASHBOARD_WINDOW = "5m"


def failure_ratio_expr(t: Thresholds) -> str:
    """Failed share of predictions per model; NaN (no result) while there are no predictions."""
    failures = promql.sum_rate(t, "prediction_failure_total", t.failure_window)
    successes = promql.sum_rate(t, "prediction_success_total", t.failure_window)
    return f"{failures}\n/\n({successes} + {failures})"


def latency_quantile_expr(t: Thresholds) -> str:
    """The latency quantile per model, over every instance's buckets summed (``sum by (..., le)``)."""
    buckets = promql.sum_rate(t, "http_request_duration_seconds_bucket", t.latency_window, t.latency_routes,
                              by_extra=("le",))
    return f"histogram_quantile({number(t.latency_quantile)}, {buckets})"


def cpu_expr(t: Thresholds) -> str:
    """Host CPU per inferwatch instance (one series per job and instance)."""
    return f"({promql.of_inferwatch(t, promql.series(t, 'system_cpu_usage'))})"


def _percentile_name(quantile: float) -> str:
    return "p" + percent(quantile).replace(".", "_")


def jaeger_slow_traces_url(t: Thresholds, service: str) -> str:
    """A Jaeger search for ``service``'s traces at least ``latency_seconds`` long."""
    seconds = float(t.latency_seconds)
    min_duration = f"{number(seconds)}s" if seconds.is_integer() else f"{round(seconds * 1000)}ms"
    return f"{t.jaeger_url}/search?service={service}&minDuration={min_duration}&lookback=1h&limit=20"


def recording_group(t: Thresholds) -> RuleGroup:
    # Dashboards read these; the alerts below keep their own expressions so that an alert never
    # waits for another group's evaluation.
    p = _percentile_name(t.latency_quantile)
    window = t.failure_window
    return RuleGroup("inferwatch.recording", "recording.yml", (
        RecordingRule(f"job:http_requests:rate{DASHBOARD_WINDOW}",
                      promql.sum_rate(t, "http_requests_total", DASHBOARD_WINDOW)),
        RecordingRule(f"job:http_request_duration_seconds_bucket:rate{DASHBOARD_WINDOW}",
                      promql.sum_rate(t, "http_request_duration_seconds_bucket", DASHBOARD_WINDOW, by_extra=("le",))),
        RecordingRule(f"job:http_request_duration_seconds:{p}_{t.latency_window}", latency_quantile_expr(t)),
        RecordingRule(f"job:prediction_success:rate{window}", promql.sum_rate(t, "prediction_success_total", window)),
        RecordingRule(f"job:prediction_failure:rate{window}", promql.sum_rate(t, "prediction_failure_total", window)),
        RecordingRule(f"job:prediction_failure:ratio_rate{window}", failure_ratio_expr(t)),
    ))


def host_group(t: Thresholds) -> RuleGroup:
    cpu = number(t.cpu_percent)
    return RuleGroup("inferwatch.host", "host.yml", (
        AlertRule(
            "HighCPUUsage",
            f"{cpu_expr(t)} > {cpu}",
            t.cpu_for,
            {"severity": "critical", "component": "system"},
            {
                "summary": f"CPU usage above {cpu}%",
                "description": f"CPU usage is {VALUE}% on {INSTANCE} (job {JOB}, threshold: {cpu}%).",
                "value": f"{VALUE}%",
            },
        ),
    ))


def predictions_group(t: Thresholds) -> RuleGroup:
    q = _percentile_name(t.latency_quantile)
    latency = number(t.latency_seconds)
    ratio_percent = percent(t.failure_ratio)
    traces = jaeger_slow_traces_url(t, JOB)
    return RuleGroup("inferwatch.predictions", "predictions.yml", (
        AlertRule(
            "HighPredictionLatency",
            f"{latency_quantile_expr(t)}\n> {latency}",
            t.latency_for,
            {"severity": "critical", "component": "prediction"},
            {
                "summary": f"Prediction latency {q} above {latency}s",
                "description": f"{q} latency of predictions ({JOB}) is {VALUE_DURATION} over the last "
                               f"{t.latency_window} (threshold: {latency}s). Slow traces: {traces}",
                "value": VALUE_DURATION,
                "traces": traces,
            },
        ),
        AlertRule(
            "HighPredictionFailureRate",
            f"{failure_ratio_expr(t)}\n> {number(t.failure_ratio)}",
            t.failure_for,
            {"severity": "critical", "component": "prediction"},
            {
                "summary": f"Prediction failure rate above {ratio_percent}%",
                "description": f"{VALUE_PERCENTAGE} of predictions ({JOB}) failed over the last "
                               f"{t.failure_window} (threshold: {ratio_percent}%). "
                               "prediction_failure_by_reason_total says why.",
                "value": VALUE_PERCENTAGE,
            },
        ),
    ))


def down_expr(t: Thresholds) -> str:
    """Scrape targets that do not answer and served inferwatch's marker within ``remember_for``.

    Only a target scraped directly serves the marker under its own job and instance; the
    collector's target does not (its series keep the services' job and instance), so a collector
    that is down shows as the services' metrics going missing instead.
    """
    known = f"present_over_time({promql.marker(t)}[{t.remember_for}])"
    return f"{promql.series(t, 'up')} == 0 and {promql.on_target()} {known}"


def absent_expr(t: Thresholds) -> str:
    """Jobs that reported inferwatch's series within ``remember_for`` and have none now; else, when
    there is no inferwatch series at all, one series without labels (``absent``).

    Per job, not per model label or instance: instances come and go (a rolling update), a job
    (a model's service) does not.
    """
    reporting = promql.of_inferwatch(t, promql.series(t, "prediction_success_total"))
    return (f"group by (job) (present_over_time({promql.marker(t)}[{t.remember_for}]))\n"
            f"unless on (job)\n"
            f"group by (job) ({reporting})\n"
            f"or on ()\n"
            f"absent({reporting})")


def availability_group(t: Thresholds) -> RuleGroup:
    # Without traffic the failure ratio is NaN and HighPredictionFailureRate stays silent, by
    # design: no predictions, nothing to judge. An outage that takes the metrics away with it is
    # caught here instead.
    return RuleGroup("inferwatch.availability", "availability.yml", (
        AlertRule(
            "InferwatchDown",
            down_expr(t),
            t.down_for,
            {"severity": "critical", "component": "service"},
            {
                "summary": "Prometheus cannot scrape inferwatch",
                "description": f"Scrape target {INSTANCE} of job {JOB} does not answer: the inferwatch "
                               "service there is down, so no prediction alert can fire for it.",
            },
        ),
        AlertRule(
            "InferwatchMetricsAbsent",
            absent_expr(t),
            t.absent_for,
            {"severity": "critical", "component": "service"},
            {
                "summary": "inferwatch metrics are missing",
                "description": (
                    f"{{{{ if $labels.job }}}}Job {JOB} reported inferwatch's metrics within the last "
                    f"{t.remember_for} and has none now{{{{ else }}}}No inferwatch metrics at all "
                    f"(no prediction_success_total with {promql.marker(t)}){{{{ end }}}}: the service "
                    "is down or not reporting (behind the collector its series vanish once the exporter's "
                    "metric expiration passes, and at once when the collector is down), so no prediction "
                    "alert can fire."),
            },
        ),
    ))


def rule_groups(t: Thresholds = THRESHOLDS, for_overrides: Mapping[str, str] | None = None) -> tuple[RuleGroup, ...]:
    """Every rule group; ``for_overrides`` ({alert name: duration}) changes only ``for``."""
    from inferwatch.render.slo_rules import slo_group  # builds on this module's rule types

    groups = (recording_group(t), host_group(t), predictions_group(t), availability_group(t), slo_group(t))
    overrides = dict(for_overrides or {})
    alerts = {rule.alert for group in groups for rule in group.rules if isinstance(rule, AlertRule)}
    if unknown := set(overrides) - alerts:
        raise UnknownAlertError(unknown, alerts)
    for alert, value in overrides.items():
        duration(f"for override of {alert}", value)
    return tuple(
        replace(group, rules=tuple(
            replace(rule, for_=overrides[rule.alert])
            if isinstance(rule, AlertRule) and rule.alert in overrides else rule
            for rule in group.rules
        ))
        for group in groups
    )


RULES_HEADER = (
    "# Generated by `python -m inferwatch.render --write` from THRESHOLDS in\n"
    "# service/inferwatch/contract/thresholds.py: do not edit by hand (`python -m inferwatch.render\n"
    "# --check` and tests/test_prometheus_rules.py fail when this file differs from the rendering).\n"
)


def render_rule_group(group: RuleGroup) -> str:
    body = {"groups": [{"name": group.name, "rules": [rule.as_yaml() for rule in group.rules]}]}
    return RULES_HEADER + "\n".join(to_yaml(body)) + "\n"


def rule_files(t: Thresholds = THRESHOLDS, for_overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """{file name: text} of every rule file."""
    return {group.file_name: render_rule_group(group) for group in rule_groups(t, for_overrides)}


def committed_files(root: Path) -> dict[Path, str]:
    """{path under root: the text it must hold}."""
    return {root / RULES_DIR / name: text for name, text in rule_files().items()}
