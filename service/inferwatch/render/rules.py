"""What every rule file is made of: the rule types, the recording rules' names, shared alert text.

:mod:`inferwatch.render.prometheus_rules` and :mod:`inferwatch.render.slo_rules` build the rule
groups from these; the dashboard (:mod:`inferwatch.render.panels`) reads the recording rules by
the names here, never by matching an expression's text. Each ``...Records`` class names one
group's recording rules (``level:metric:operation``, the window in the name) for the thresholds
it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from inferwatch.contract import durations
from inferwatch.contract.profile import PERFORMANCE_METRICS
from inferwatch.contract.thresholds import Thresholds
from inferwatch.render.text import percent

# Window of the recording rules that no alert shares (request rate, latency buckets).
DASHBOARD_WINDOW = "5m"


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
MODEL = "{{ $labels.model }} {{ $labels.model_version }}"
FEATURE = "{{ $labels.feature }}"
# PSI as a plain decimal: humanize would print 0.4159 as 415.9m.
PSI_VALUE = '{{ $value | printf "%.3f" }}'
# A ratio to three decimals (an estimated accuracy, a precision).
RATIO_VALUE = PSI_VALUE


def percentile_name(quantile: float) -> str:
    return "p" + percent(quantile).replace(".", "_")


# Traces a slow-trace link asks Jaeger for.
TRACE_SEARCH_LIMIT = 20




def jaeger_slow_traces_url(t: Thresholds, service: str, start: str | None = None, end: str | None = None, *,
                           api: bool = False) -> str:
    """A Jaeger search for ``service``'s traces at least the latency threshold long.

    ``start``/``end`` (microseconds since the epoch, or template text that renders them) bound
    the search; without them it covers the last hour. ``api`` gives the query API's
    ``/api/traces`` (JSON, what the native stack's Jaeger serves) instead of the UI's ``/search``.
    """
    query = f"service={service}&minDuration={durations.short(t.latency_seconds)}"
    if start is None:
        window = "&lookback=1h"
    else:
        window = f"&start={start}&end={end}" if api else f"&lookback=custom&start={start}&end={end}"
    return f"{t.jaeger_url}{'/api/traces' if api else '/search'}?{query}{window}&limit={TRACE_SEARCH_LIMIT}"


class RecordingRecords:
    """Names of the dashboards' recording rules (rules/recording.yml)."""

    def __init__(self, t: Thresholds):
        w, q = t.failure_window, percentile_name(t.latency_quantile)
        self.requests = f"job:http_requests:rate{DASHBOARD_WINDOW}"
        self.duration_buckets = f"job:http_request_duration_seconds_bucket:rate{DASHBOARD_WINDOW}"
        self.latency_quantile = f"job:http_request_duration_seconds:{q}_{t.latency_window}"
        self.successes = f"job:prediction_success:rate{w}"
        self.failures = f"job:prediction_failure:rate{w}"
        self.failure_ratio = f"job:prediction_failure:ratio_rate{w}"


class QualityRecords:
    """Names of the model-quality recording rules (dashboards and alerts read them)."""

    def __init__(self, t: Thresholds):
        w, v = t.drift_window, t.violation_window
        self.feature_rows = f"job_model_feature:model_feature_values:increase{w}"
        self.feature_share = f"job_model_feature_bin:model_feature_share:ratio{w}"
        self.feature_psi = f"job_model_feature:model_feature_psi:{w}"
        self.feature_bins = "job_model_feature:model_feature_reference_bins:count"
        self.feature_psi_critical = f"job_model_feature:model_feature_psi_critical:{w}"
        self.prediction_rows = f"job_model:model_prediction_values:increase{w}"
        self.prediction_share = f"job_model_bin:model_prediction_share:ratio{w}"
        self.prediction_psi = f"job_model:model_prediction_psi:{w}"
        self.prediction_bins = "job_model:model_prediction_reference_bins:count"
        self.prediction_psi_critical = f"job_model:model_prediction_psi_critical:{w}"
        self.feedback_labels = f"job_model:model_feedback_labels:increase{t.accuracy_window}"
        self.accuracy = f"job_model:model_feedback_accuracy:ratio{t.accuracy_window}"
        self.violation_ratio = f"job_model_column_kind:model_input_violation:ratio_rate{v}"
        self.issue_ratio = f"job_model_feature_issue:model_input_issue:ratio_rate{t.data_quality_window}"


# The estimated and realized classification metrics that are averaged over classes (macro).
CLASS_METRICS = tuple(m for m in PERFORMANCE_METRICS if m != "accuracy")


class PerformanceRecords:
    """Names of the estimated-performance recording rules (dashboards and the alert read them)."""

    def __init__(self, t: Thresholds):
        w, a = t.estimate_window, t.accuracy_window
        self.estimated_rows = f"job_model:model_estimated_rows:increase{w}"
        self.estimated_class = {m: f"job_model_class:model_estimated_{m}:ratio{w}" for m in CLASS_METRICS}
        self.estimated = f"job_model_metric:model_estimated_performance:ratio{w}"
        self.realized_class = {m: f"job_model_class:model_feedback_{m}:ratio{a}" for m in CLASS_METRICS}
        self.realized = f"job_model_metric:model_feedback_performance:ratio{a}"
        self.accuracy_gap = f"job_model:model_estimated_accuracy_gap:ratio{a}"


class GenAiRecords:
    """Names of the GenAI recording rules (the dashboard's GenAI row and the alerts read them)."""

    def __init__(self, t: Thresholds):
        w, r = t.genai_window, t.genai_satisfaction_window
        q = percentile_name(t.latency_quantile)
        self.tokens = f"job_model_token_type:gen_ai_tokens:rate{w}"
        self.tokens_per_request = f"job_model_token_type:gen_ai_tokens_per_request:ratio_rate{w}"
        self.duration = f"job_model_operation:gen_ai_client_operation_duration_seconds:{q}_{w}"
        self.errors = f"job_model_error_type:gen_ai_errors:rate{w}"
        self.choices = f"job_model:gen_ai_choices:increase{w}"
        self.cutoff = f"job_model:gen_ai_cutoff:ratio{w}"
        self.ratings = f"job_model:gen_ai_ratings:increase{r}"
        self.satisfaction = f"job_model:gen_ai_satisfaction:ratio{r}"
