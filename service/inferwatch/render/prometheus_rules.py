"""The Prometheus rule files, rendered from the thresholds.

One file per rule group under ``observability/prometheus/rules/`` (recording rules, host,
predictions, availability, model quality): every expression and alert text reads its numbers from
:data:`inferwatch.contract.thresholds.THRESHOLDS`, so a threshold is never written down twice.
``python -m inferwatch.render --check`` (and ``tests/test_prometheus_rules.py``) fail when a
committed file differs from the rendering.

Tests shorten the ``for`` durations (``rule_files(for_overrides=...)``); nothing else can be
overridden, so the expressions a test runs are the committed ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
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

    def as_yaml(self) -> dict:
        return {"record": self.record, "expr": self.expr}


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
MODEL = "{{ $labels.model }} {{ $labels.model_version }}"
FEATURE = "{{ $labels.feature }}"
# PSI as a plain decimal: humanize would print 0.4159 as 415.9m.
PSI_VALUE = '{{ $value | printf "%.3f" }}'

# Window of the recording rules that no alert shares (request rate, latency buckets).
DASHBOARD_WINDOW = "5m"


def _selector(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}"


def _rate(metric: str, window: str, *matchers: str) -> str:
    return f"rate({metric}{_selector(*matchers)}[{window}])"


def _increase(metric: str, window: str, *matchers: str) -> str:
    return f"increase({metric}{_selector(*matchers)}[{window}])"


def failure_ratio_expr(t: Thresholds) -> str:
    """Failed share of predictions per job; NaN (no result) while there are no predictions."""
    failures = f"sum by (job) ({_rate('prediction_failure_total', t.failure_window, t.selector)})"
    successes = f"sum by (job) ({_rate('prediction_success_total', t.failure_window, t.selector)})"
    return f"{failures}\n/\n({successes} + {failures})"


def latency_quantile_expr(t: Thresholds) -> str:
    """The latency quantile per job, over every instance's buckets summed (``sum by (le)``)."""
    buckets = _rate("http_request_duration_seconds_bucket", t.latency_window, t.selector, t.latency_routes)
    return f"histogram_quantile({number(t.latency_quantile)}, sum by (job, le) ({buckets}))"


def _percentile_name(quantile: float) -> str:
    return "p" + percent(quantile).replace(".", "_")


def jaeger_slow_traces_url(t: Thresholds) -> str:
    seconds = float(t.latency_seconds)
    min_duration = f"{number(seconds)}s" if seconds.is_integer() else f"{round(seconds * 1000)}ms"
    return f"{t.jaeger_url}/search?service={t.trace_service}&minDuration={min_duration}&lookback=1h&limit=20"


def recording_group(t: Thresholds) -> RuleGroup:
    # Dashboards read these; the alerts below keep their own expressions so that an alert never
    # waits for another group's evaluation.
    p = _percentile_name(t.latency_quantile)
    window = t.failure_window
    return RuleGroup("inferwatch.recording", "recording.yml", (
        RecordingRule(f"job:http_requests:rate{DASHBOARD_WINDOW}",
                      f"sum by (job) ({_rate('http_requests_total', DASHBOARD_WINDOW, t.selector)})"),
        RecordingRule(f"job:http_request_duration_seconds_bucket:rate{DASHBOARD_WINDOW}",
                      f"sum by (job, le) ({_rate('http_request_duration_seconds_bucket', DASHBOARD_WINDOW, t.selector)})"),
        RecordingRule(f"job:http_request_duration_seconds:{p}_{t.latency_window}", latency_quantile_expr(t)),
        RecordingRule(f"job:prediction_success:rate{window}",
                      f"sum by (job) ({_rate('prediction_success_total', window, t.selector)})"),
        RecordingRule(f"job:prediction_failure:rate{window}",
                      f"sum by (job) ({_rate('prediction_failure_total', window, t.selector)})"),
        RecordingRule(f"job:prediction_failure:ratio_rate{window}", failure_ratio_expr(t)),
    ))


def host_group(t: Thresholds) -> RuleGroup:
    cpu = number(t.cpu_percent)
    return RuleGroup("inferwatch.host", "host.yml", (
        AlertRule(
            "HighCPUUsage",
            f"system_cpu_usage{_selector(t.selector)} > {cpu}",
            t.cpu_for,
            {"severity": "critical", "component": "system"},
            {
                "summary": f"CPU usage above {cpu}%",
                "description": f"CPU usage is {VALUE}% on {INSTANCE} (threshold: {cpu}%).",
                "value": f"{VALUE}%",
            },
        ),
    ))


def predictions_group(t: Thresholds) -> RuleGroup:
    q = _percentile_name(t.latency_quantile)
    latency = number(t.latency_seconds)
    ratio_percent = percent(t.failure_ratio)
    traces = jaeger_slow_traces_url(t)
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


def availability_group(t: Thresholds) -> RuleGroup:
    # Without traffic the failure ratio is NaN and HighPredictionFailureRate stays silent, by
    # design: no predictions, nothing to judge. An outage that takes the metrics away with it is
    # caught here instead.
    return RuleGroup("inferwatch.availability", "availability.yml", (
        AlertRule(
            "InferwatchDown",
            f"up{_selector(t.selector)} == 0",
            t.down_for,
            {"severity": "critical", "component": "service"},
            {
                "summary": "Prometheus cannot scrape inferwatch",
                "description": f"Scrape target {INSTANCE} of job {JOB} does not answer: the service "
                               "(or the collector in front of it) is down, so no prediction alert can fire.",
            },
        ),
        AlertRule(
            "InferwatchMetricsAbsent",
            f"absent(prediction_success_total{_selector(t.selector)})",
            t.absent_for,
            {"severity": "critical", "component": "service"},
            {
                "summary": "inferwatch metrics are missing",
                "description": f"No prediction_success_total{_selector(t.selector)} series: the service is down "
                               "or not reporting (behind the collector its series vanish once the "
                               "exporter's metric expiration passes), so no prediction alert can fire.",
            },
        ),
    ))


# Model quality: what the series are aggregated by. Every instance's counts are summed before
# any share or PSI is computed, so the drift of a model served by several proxies is the drift of
# all its rows (a per-process score would not add up).
MODEL_BY = "job, model, model_version"
FEATURE_BY = f"{MODEL_BY}, feature"


class QualityRecords:
    """Names of the model-quality recording rules (dashboards and alerts read them)."""

    def __init__(self, t: Thresholds):
        w, v = t.drift_window, t.violation_window
        self.feature_rows = f"job_model_feature:model_feature_values:increase{w}"
        self.feature_share = f"job_model_feature_bin:model_feature_share:ratio{w}"
        self.feature_psi = f"job_model_feature:model_feature_psi:{w}"
        self.prediction_rows = f"job_model:model_prediction_values:increase{w}"
        self.prediction_share = f"job_model_bin:model_prediction_share:ratio{w}"
        self.prediction_psi = f"job_model:model_prediction_psi:{w}"
        self.feedback_labels = f"job_model:model_feedback_labels:increase{t.accuracy_window}"
        self.accuracy = f"job_model:model_feedback_accuracy:ratio{t.accuracy_window}"
        self.violation_ratio = f"job_model_column_kind:model_input_violation:ratio_rate{v}"


def psi_expr(share_record: str, expected_metric: str, by: str, t: Thresholds) -> str:
    """PSI = sum over bins (a - e) * ln(a / e), a and e raised to psi_epsilon where smaller.

    ``e`` is the profile's expected share, the same on every instance (``max`` keeps one).
    """
    eps = number(t.psi_epsilon)
    actual = f"clamp_min({share_record}{_selector(t.selector)}, {eps})"
    expected = f"clamp_min(max by ({by}, bin) ({expected_metric}{_selector(t.selector)}), {eps})"
    return f"sum by ({by}) (\n  ({actual} - {expected})\n  * ln({actual} / {expected})\n)"


def share_expr(counter: str, by: str, t: Thresholds) -> str:
    """Each bin's share of the rows counted over the drift window, every instance summed."""
    per_bin = f"sum by ({by}, bin) ({_increase(counter, t.drift_window, t.selector)})"
    rows = f"sum by ({by}) ({_increase(counter, t.drift_window, t.selector)})"
    return f"{per_bin}\n/ ignoring(bin) group_left()\n({rows} > 0)"


def quality_group(t: Thresholds) -> RuleGroup:
    r = QualityRecords(t)
    sel = _selector(t.selector)
    act, floor, watch = number(t.drift_act), number(t.accuracy_floor), number(t.drift_watch)
    violation_percent = percent(t.violation_ratio)
    rows = f"sum by ({MODEL_BY}) ({_rate('model_input_rows_total', t.violation_window, t.selector)})"
    violations = f"sum by ({MODEL_BY}, column, kind) ({_rate('model_input_violation_total', t.violation_window, t.selector)})"
    drift_text = (f"(threshold: {act}; {watch} is worth a look) over the last {t.drift_window}, "
                  f"every instance's rows summed")
    return RuleGroup("inferwatch.quality", "quality.yml", (
        RecordingRule(r.feature_rows, f"sum by ({FEATURE_BY}) ({_increase('model_feature_bin_total', t.drift_window, t.selector)})"),
        RecordingRule(r.feature_share, share_expr("model_feature_bin_total", FEATURE_BY, t)),
        RecordingRule(r.feature_psi, psi_expr(r.feature_share, "model_feature_expected_share", FEATURE_BY, t)),
        RecordingRule(r.prediction_rows, f"sum by ({MODEL_BY}) ({_increase('model_prediction_bin_total', t.drift_window, t.selector)})"),
        RecordingRule(r.prediction_share, share_expr("model_prediction_bin_total", MODEL_BY, t)),
        RecordingRule(r.prediction_psi, psi_expr(r.prediction_share, "model_prediction_expected_share", MODEL_BY, t)),
        RecordingRule(r.feedback_labels, f"sum by ({MODEL_BY}) ({_increase('model_feedback_labels_total', t.accuracy_window, t.selector)})"),
        RecordingRule(r.accuracy,
                      f"sum by ({MODEL_BY}) ({_increase('model_feedback_correct_total', t.accuracy_window, t.selector)})\n"
                      f"/\n({r.feedback_labels}{sel} > 0)"),
        RecordingRule(r.violation_ratio, f"{violations}\n/ ignoring(column, kind) group_left()\n({rows} > 0)"),
        AlertRule(
            "ModelInputDrift",
            f"{r.feature_psi}{sel} > {act}\nand on({FEATURE_BY})\n{r.feature_rows}{sel} >= {t.drift_min_rows}",
            t.drift_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Input drift on feature {FEATURE} of model {MODEL}",
                "description": f"Feature {FEATURE} of model {MODEL} ({JOB}) has drifted from its training "
                               f"data: PSI {PSI_VALUE} {drift_text}. Compare its bins with the reference on the "
                               "dashboard's Model quality row.",
                "value": PSI_VALUE,
            },
        ),
        AlertRule(
            "ModelPredictionDrift",
            f"{r.prediction_psi}{sel} > {act}\nand on({MODEL_BY})\n{r.prediction_rows}{sel} >= {t.drift_min_rows}",
            t.drift_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Prediction drift of model {MODEL}",
                "description": f"The answers of model {MODEL} ({JOB}) no longer look like its answers on the "
                               f"training data: PSI {PSI_VALUE} {drift_text}.",
                "value": PSI_VALUE,
            },
        ),
        AlertRule(
            "ModelAccuracyLow",
            f"{r.accuracy}{sel} < {floor}\nand on({MODEL_BY})\n{r.feedback_labels}{sel} >= {t.accuracy_min_labels}",
            t.accuracy_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Online accuracy of model {MODEL} below {percent(t.accuracy_floor)}%",
                "description": f"{VALUE_PERCENTAGE} of the feedback labels for model {MODEL} ({JOB}) matched "
                               f"the prediction over the last {t.accuracy_window} (floor: "
                               f"{percent(t.accuracy_floor)}%, judged from {t.accuracy_min_labels} labels).",
                "value": VALUE_PERCENTAGE,
            },
        ),
        AlertRule(
            "ModelInputViolations",
            f"{r.violation_ratio}{sel} > {number(t.violation_ratio)}",
            t.violation_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": "Inputs violate the signature of model "
                           f"{MODEL}: {{{{ $labels.kind }}}} column {{{{ $labels.column }}}}",
                "description": f"{VALUE_PERCENTAGE} of the rows sent to model {MODEL} ({JOB}) over the last "
                               f"{t.violation_window} had column {{{{ $labels.column }}}} "
                               f"{{{{ $labels.kind }}}} (threshold: {violation_percent}%; column __other__ "
                               "stands for every column the signature does not have).",
                "value": VALUE_PERCENTAGE,
            },
        ),
    ))


def rule_groups(t: Thresholds = THRESHOLDS, for_overrides: Mapping[str, str] | None = None) -> tuple[RuleGroup, ...]:
    """Every rule group; ``for_overrides`` ({alert name: duration}) changes only ``for``."""
    groups = (recording_group(t), host_group(t), predictions_group(t), availability_group(t), quality_group(t))
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
