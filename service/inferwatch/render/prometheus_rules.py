"""The Prometheus rule files, rendered from the thresholds.

One file per rule group under ``observability/prometheus/rules/`` (recording rules, host,
predictions, availability, model quality, estimated performance, and the SLOs' from
:mod:`inferwatch.render.slo_rules`):
every expression and alert text reads its numbers from
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

from inferwatch.contract import durations
from inferwatch.contract.genai import LENGTH
from inferwatch.contract.profile import PERFORMANCE_METRICS, upper_normal_quantile
from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
from inferwatch.render import promql
from inferwatch.render.rules import (
    CLASS_METRICS,
    DASHBOARD_WINDOW,
    FEATURE,
    INSTANCE,
    JOB,
    MODEL,
    PSI_VALUE,
    RATIO_VALUE,
    VALUE,
    VALUE_DURATION,
    VALUE_PERCENTAGE,
    AlertRule,
    GenAiRecords,
    PerformanceRecords,
    QualityRecords,
    RecordingRecords,
    RecordingRule,
    RuleGroup,
    UnknownAlertError,
    jaeger_slow_traces_url,
    percentile_name,
)
from inferwatch.render.slo_rules import slo_group
from inferwatch.render.text import duration, number, percent, to_yaml

RULES_DIR = Path("observability/prometheus/rules")




def failure_ratio_expr(t: Thresholds) -> str:
    """Failed share of predictions per model; NaN (no result) while there are no predictions."""
    failures = promql.sum_rate(t, "prediction_failure_total", t.failure_window)
    successes = promql.sum_rate(t, "prediction_success_total", t.failure_window)
    return f"{failures}\n/\n({successes} + {failures})"


def latency_quantile_expr(t: Thresholds, *matchers: str) -> str:
    """The latency quantile per model, over every instance's buckets summed (``sum by (..., le)``)."""
    buckets = promql.sum_rate(t, "http_request_duration_seconds_bucket", t.latency_window, t.latency_routes,
                              *matchers, by_extra=("le",))
    return f"histogram_quantile({number(t.latency_quantile)}, {buckets})"


def cpu_expr(t: Thresholds) -> str:
    """Host CPU per inferwatch instance (one series per job and instance)."""
    return f"({promql.of_inferwatch(t, promql.series(t, 'system_cpu_usage'))})"





def _eval_time_us(offset: str = "") -> str:
    """Template text: the rule's evaluation time (minus ``offset`` seconds), in microseconds."""
    expr = f"(time() - {offset}) * 1e6" if offset else "time() * 1e6"
    return f'{{{{ with query "{expr}" }}}}{{{{ . | first | value | printf "%.0f" }}}}{{{{ end }}}}'




def upstream_quantile_expr(t: Thresholds, *matchers: str) -> str:
    """The MLflow call's latency quantile (model time) per model, like :func:`latency_quantile_expr`."""
    buckets = promql.sum_rate(t, "upstream_request_duration_seconds_bucket", t.latency_window, *matchers,
                              by_extra=("le",))
    return f"histogram_quantile({number(t.latency_quantile)}, {buckets})"


def _model_time_text(t: Thresholds) -> str:
    """Template text: how much of the alert's quantile the MLflow call took, for this alert's model."""
    # One matcher per model label, filled in from the alert's own labels by printf.
    matchers = [f"{label}=%q" for label in t.model_labels]
    arguments = " ".join(f"$labels.{label}" for label in t.model_labels)
    model = upstream_quantile_expr(t, *matchers)
    share = f"{model} / {latency_quantile_expr(t, *matchers)}"
    q = percentile_name(t.latency_quantile)
    return (
        f"{{{{ with printf `{model}` {arguments} | query }}}} Model time: the MLflow call's {q} is "
        f"{{{{ . | first | value | humanizeDuration }}}}{{{{ end }}}}"
        f"{{{{ with printf `{share}` {arguments} {arguments} | query }}}}, {{{{ . | first | value | humanizePercentage }}}}"
        f" of the request {q}; the rest is proxy time.{{{{ end }}}}"
    )


def recording_group(t: Thresholds) -> RuleGroup:
    # Dashboards read these; the alerts below keep their own expressions so that an alert never
    # waits for another group's evaluation.
    r, window = RecordingRecords(t), t.failure_window
    return RuleGroup("inferwatch.recording", "recording.yml", (
        RecordingRule(r.requests, promql.sum_rate(t, "http_requests_total", DASHBOARD_WINDOW)),
        RecordingRule(r.duration_buckets,
                      promql.sum_rate(t, "http_request_duration_seconds_bucket", DASHBOARD_WINDOW, by_extra=("le",))),
        RecordingRule(r.latency_quantile, latency_quantile_expr(t)),
        RecordingRule(r.successes, promql.sum_rate(t, "prediction_success_total", window)),
        RecordingRule(r.failures, promql.sum_rate(t, "prediction_failure_total", window)),
        RecordingRule(r.failure_ratio, failure_ratio_expr(t)),
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
    q = percentile_name(t.latency_quantile)
    latency = number(t.latency_seconds)
    ratio_percent = percent(t.failure_ratio)
    # The slow traces of the alert's window: the quantile's window up to the evaluation.
    start, end = _eval_time_us(str(int(durations.seconds(t.latency_window)))), _eval_time_us()
    traces = jaeger_slow_traces_url(t, JOB, start, end)
    return RuleGroup("inferwatch.predictions", "predictions.yml", (
        AlertRule(
            "HighPredictionLatency",
            f"{latency_quantile_expr(t)}\n> {latency}",
            t.latency_for,
            {"severity": "critical", "component": "prediction"},
            {
                "summary": f"Prediction latency {q} above {latency}s",
                "description": f"{q} latency of predictions ({JOB}) is {VALUE_DURATION} over the last "
                               f"{t.latency_window} (threshold: {latency}s).{_model_time_text(t)} "
                               f"Slow traces: {traces}",
                "value": VALUE_DURATION,
                "traces": traces,
                "traces_api": jaeger_slow_traces_url(t, JOB, start, end, api=True),
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


# Model quality: every instance's counts are summed (by the model labels) before any share or
# PSI is computed, so the drift of a model served by several proxies is the drift of all its rows
# (a per-process score would not add up).




def _sum_increase(t: Thresholds, counter: str, window: str, *by_extra: str) -> str:
    return f"sum {promql.by(t, *by_extra)} ({promql.increase(t, counter, window)})"


def psi_expr(share_record: str, expected_metric: str, t: Thresholds, *by_extra: str) -> str:
    """PSI = sum over bins (a - e) * ln(a / e), a and e raised to psi_epsilon where smaller.

    ``e`` is the profile's expected share, the same on every instance (``max`` keeps one).
    """
    eps = number(t.psi_epsilon)
    actual = f"clamp_min({promql.series(t, share_record)}, {eps})"
    expected = f"clamp_min(max {promql.by(t, *by_extra, 'bin')} ({promql.gauge(t, expected_metric)}), {eps})"
    return f"sum {promql.by(t, *by_extra)} (\n  ({actual} - {expected})\n  * ln({actual} / {expected})\n)"


def reference_bins_expr(expected_metric: str, t: Thresholds, *by_extra: str) -> str:
    """Bins with a reference share above 0 (the PSI's degrees of freedom are one fewer)."""
    return (f"count {promql.by(t, *by_extra)} (\n  max {promql.by(t, *by_extra, 'bin')} "
            f"({promql.gauge(t, expected_metric)}) > 0\n)")


def psi_critical_expr(bins_record: str, rows_record: str, t: Thresholds, *by_extra: str) -> str:
    """The PSI the window's rows exceed by chance with probability drift_alpha:
    ``q * (1 / rows + 1 / reference rows)``, q the chi-square quantile of bins - 1 degrees of
    freedom by Wilson and Hilferty's approximation (contract.profile.psi_critical_value, which the
    tests compare with). A reference of 0 rows (unknown), or no model_reference_rows at all (a
    proxy from before it), counts as exact: 1 / reference rows = 0.
    """
    k = f"({promql.series(t, bins_record)} - 1)"
    z = number(upper_normal_quantile(t.drift_alpha))
    quantile = f"{k} * (1 - 2 / (9 * {k}) + {z} * sqrt(2 / (9 * {k}))) ^ 3"
    reference = f"max {promql.by(t)} ({promql.gauge(t, 'model_reference_rows')})"
    none = f"max {promql.by(t)} ({promql.series(t, bins_record)}) * 0"
    join = f"{promql.on(t)} group_left ()" if by_extra else promql.on(t)
    return (f"(\n  {quantile}\n)\n* {promql.on(t, *by_extra)}\n(\n  1 / {promql.series(t, rows_record)}\n"
            f"  + {join}\n  ((1 / ({reference} > 0)) or ({reference} * 0) or ({none}))\n)")


def drift_alert_expr(psi_record: str, critical_record: str, rows_record: str, bins_record: str,
                     t: Thresholds, *by_extra: str) -> str:
    """PSI above the fixed floor, above its critical value, on enough rows per bin."""
    on = promql.on(t, *by_extra)
    psi = promql.series(t, psi_record)
    return (f"{psi} > {number(t.drift_act)}\nand {on}\n"
            f"{psi} > {on} {promql.series(t, critical_record)}\nand {on}\n"
            f"{promql.series(t, rows_record)} >= {on} ({t.drift_min_rows_per_bin} * {promql.series(t, bins_record)})")


def labelled_value(t: Thresholds, metric: str, *extra: str, aggregate: str = "") -> str:
    """Template text: the value of ``metric{model labels, extra}`` (through ``aggregate``, e.g.
    ``max``, when instances each have one) for the alert's own labels, to 3 decimals."""
    labels = (*t.model_labels, *extra)
    matchers = ", ".join(f"{label}=%q" for label in labels)
    arguments = " ".join(f"$labels.{label}" for label in labels)
    selector = f"{metric}{{{matchers}}}"
    expr = f"{aggregate}({selector})" if aggregate else selector
    return (f"{{{{ with printf `{expr}` {arguments} | query }}}}"
            f"{{{{ . | first | value | printf \"%.3f\" }}}}{{{{ end }}}}")


def share_expr(counter: str, t: Thresholds, *by_extra: str) -> str:
    """Each bin's share of the rows counted over the drift window, every instance summed."""
    per_bin = _sum_increase(t, counter, t.drift_window, *by_extra, "bin")
    rows = _sum_increase(t, counter, t.drift_window, *by_extra)
    return f"{per_bin}\n/ ignoring(bin) group_left()\n({rows} > 0)"


def quality_group(t: Thresholds) -> RuleGroup:
    r = QualityRecords(t)
    act, floor, watch = number(t.drift_act), number(t.accuracy_floor), number(t.drift_watch)
    violation_percent = percent(t.violation_ratio)
    rows = promql.sum_rate(t, "model_input_rows_total", t.violation_window)
    violations = promql.sum_rate(t, "model_input_violation_total", t.violation_window, by_extra=("column", "kind"))
    alpha = percent(t.drift_alpha)
    issues = promql.sum_rate(t, "model_input_issue_total", t.data_quality_window, by_extra=("feature", "issue"))
    sent = promql.sum_rate(t, "model_input_rows_total", t.data_quality_window)

    def drift_text(critical_record: str, *extra: str) -> str:
        critical = labelled_value(t, critical_record, *extra)
        return (f"(threshold: {act}, and its critical value {critical}, the PSI the window's rows would exceed "
                f"by chance with probability {alpha}%; {watch} is worth a look) over the last {t.drift_window}, "
                "every instance's rows summed")

    def recorded(name: str) -> str:
        return promql.series(t, name)

    return RuleGroup("inferwatch.quality", "quality.yml", (
        RecordingRule(r.feature_rows, _sum_increase(t, "model_feature_bin_total", t.drift_window, "feature")),
        RecordingRule(r.feature_share, share_expr("model_feature_bin_total", t, "feature")),
        RecordingRule(r.feature_psi, psi_expr(r.feature_share, "model_feature_expected_share", t, "feature")),
        RecordingRule(r.feature_bins, reference_bins_expr("model_feature_expected_share", t, "feature")),
        RecordingRule(r.feature_psi_critical, psi_critical_expr(r.feature_bins, r.feature_rows, t, "feature")),
        RecordingRule(r.prediction_rows, _sum_increase(t, "model_prediction_bin_total", t.drift_window)),
        RecordingRule(r.prediction_share, share_expr("model_prediction_bin_total", t)),
        RecordingRule(r.prediction_psi, psi_expr(r.prediction_share, "model_prediction_expected_share", t)),
        RecordingRule(r.prediction_bins, reference_bins_expr("model_prediction_expected_share", t)),
        RecordingRule(r.prediction_psi_critical, psi_critical_expr(r.prediction_bins, r.prediction_rows, t)),
        RecordingRule(r.feedback_labels, _sum_increase(t, "model_feedback_labels_total", t.accuracy_window)),
        RecordingRule(r.accuracy,
                      f"{_sum_increase(t, 'model_feedback_correct_total', t.accuracy_window)}\n"
                      f"/\n({recorded(r.feedback_labels)} > 0)"),
        RecordingRule(r.violation_ratio, f"{violations}\n/ ignoring(column, kind) group_left()\n({rows} > 0)"),
        RecordingRule(r.issue_ratio, f"{issues}\n/ ignoring(feature, issue) group_left()\n({sent} > 0)"),
        AlertRule(
            "ModelInputDrift",
            drift_alert_expr(r.feature_psi, r.feature_psi_critical, r.feature_rows, r.feature_bins, t, "feature"),
            t.drift_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Input drift on feature {FEATURE} of model {MODEL}",
                "description": f"Feature {FEATURE} of model {MODEL} ({JOB}) has drifted from its training "
                               f"data: PSI {PSI_VALUE} {drift_text(r.feature_psi_critical, 'feature')}. Compare "
                               "its bins with the reference on the dashboard's Model quality row.",
                "value": PSI_VALUE,
            },
        ),
        AlertRule(
            "ModelPredictionDrift",
            drift_alert_expr(r.prediction_psi, r.prediction_psi_critical, r.prediction_rows, r.prediction_bins, t),
            t.drift_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Prediction drift of model {MODEL}",
                "description": f"The answers of model {MODEL} ({JOB}) no longer look like its answers on the "
                               f"training data: PSI {PSI_VALUE} {drift_text(r.prediction_psi_critical)}.",
                "value": PSI_VALUE,
            },
        ),
        AlertRule(
            "ModelAccuracyLow",
            f"{recorded(r.accuracy)} < {floor}\nand {promql.on(t)}\n"
            f"{recorded(r.feedback_labels)} >= {t.accuracy_min_labels}",
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
            f"{recorded(r.violation_ratio)} > {number(t.violation_ratio)}",
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


# GenAI: token rates, durations, cut-off answers, errors and ratings per model, every instance
# summed (docs/genai.md).




def genai_duration_quantile_expr(t: Thresholds) -> str:
    buckets = promql.sum_rate(t, "gen_ai_client_operation_duration_seconds_bucket", t.genai_window,
                              by_extra=("operation", "le"))
    return f"histogram_quantile({number(t.latency_quantile)}, {buckets})"


def genai_group(t: Thresholds) -> RuleGroup:
    r = GenAiRecords(t)
    w = t.genai_window
    cutoff, floor = number(t.genai_cutoff_ratio), number(t.genai_satisfaction_floor)

    def recorded(name: str) -> str:
        return promql.series(t, name)

    tokens = promql.sum_rate(t, "gen_ai_client_token_usage_sum", w, by_extra=("token_type",))
    measured = promql.sum_rate(t, "gen_ai_client_token_usage_count", w, by_extra=("token_type",))
    length = f'reason="{LENGTH}"'
    cut_off = f"sum {promql.by(t)} ({promql.increase(t, 'gen_ai_response_finish_reasons_total', w, length)})"
    return RuleGroup("inferwatch.genai", "genai.yml", (
        RecordingRule(r.tokens, tokens),
        RecordingRule(r.tokens_per_request, f"{recorded(r.tokens)}\n/\n({measured} > 0)"),
        RecordingRule(r.duration, genai_duration_quantile_expr(t)),
        RecordingRule(r.errors, promql.sum_rate(t, "gen_ai_client_operation_duration_seconds_count", w,
                                                'error_type!=""', by_extra=("error_type",))),
        RecordingRule(r.choices, _sum_increase(t, "gen_ai_response_finish_reasons_total", w)),
        RecordingRule(r.cutoff, f"{cut_off}\n/\n({recorded(r.choices)} > 0)"),
        RecordingRule(r.ratings, _sum_increase(t, "gen_ai_feedback_ratings_total", t.genai_satisfaction_window)),
        RecordingRule(r.satisfaction,
                      f"{_sum_increase(t, 'gen_ai_feedback_satisfaction_total', t.genai_satisfaction_window)}\n"
                      f"/\n({recorded(r.ratings)} > 0)"),
        AlertRule(
            "GenAiAnswersCutOff",
            f"{recorded(r.cutoff)} > {cutoff}\nand {promql.on(t)}\n{recorded(r.choices)} >= {t.genai_min_choices}",
            t.genai_cutoff_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"GenAI answers of model {MODEL} cut off by the token limit",
                "description": f"{VALUE_PERCENTAGE} of the answers of model {MODEL} ({JOB}) over the last {w} "
                               f"stopped at their token limit (finish reason length; threshold: "
                               f"{percent(t.genai_cutoff_ratio)}%): raise max_tokens or shorten the prompts.",
                "value": VALUE_PERCENTAGE,
            },
        ),
        AlertRule(
            "GenAiSatisfactionLow",
            f"{recorded(r.satisfaction)} < {floor}\nand {promql.on(t)}\n"
            f"{recorded(r.ratings)} >= {t.genai_min_ratings}",
            t.genai_satisfaction_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Users rate the GenAI answers of model {MODEL} low",
                "description": f"The mean rating of model {MODEL} ({JOB}) over the last "
                               f"{t.genai_satisfaction_window} is {VALUE_PERCENTAGE} (floor: "
                               f"{percent(t.genai_satisfaction_floor)}%, judged from {t.genai_min_ratings} "
                               "ratings; thumbs up counts 100%, down 0%).",
                "value": VALUE_PERCENTAGE,
            },
        ),
    ))


# Estimated performance: a classifier's expected confusion-matrix cells, summed over every instance
# before any ratio, against the realized ones from feedback labels (docs/model-quality.md).



def class_metric_exprs(t: Thresholds, prefix: str, window: str, summed=None) -> dict[str, str]:
    """Per class: precision TP / predicted, recall TP / actual, F1 2 TP / (predicted + actual),
    each of the counts ``<prefix>_{true_positive,predicted,actual}_total`` summed over every
    instance first (``summed(counter, window, *by)``, by default every inferwatch instance's
    increase); no result where the denominator is 0."""
    summed = summed or (lambda counter, w, *by: _sum_increase(t, counter, w, *by))
    tp, predicted, actual = (summed(f"{prefix}_{cell}_total", window, "class")
                             for cell in ("true_positive", "predicted", "actual"))
    return {
        "precision": f"{tp}\n/\n({predicted} > 0)",
        "recall": f"{tp}\n/\n({actual} > 0)",
        "f1": f"2 * {tp}\n/\n(\n  ({predicted}\n  + {actual}) > 0\n)",
    }


def by_metric_expr(t: Thresholds, accuracy: str, class_records: Mapping[str, str]) -> str:
    """One series per metric (label ``metric``): accuracy, and the class metrics averaged over the
    classes (macro), so one alert compares each with its reference."""
    parts = [f'label_replace(\n  {accuracy},\n  "metric", "accuracy", "", ""\n)']
    parts += [f'label_replace(\n  avg {promql.by(t)} ({promql.series(t, record)}),\n  "metric", "{metric}", "", ""\n)'
              for metric, record in class_records.items()]
    return "\nor\n".join(parts)


def performance_group(t: Thresholds) -> RuleGroup:
    r = PerformanceRecords(t)
    w, a = t.estimate_window, t.accuracy_window
    labels = _sum_increase(t, "model_feedback_labels_total", a)
    estimated_accuracy = (f"{_sum_increase(t, 'model_estimated_correct_total', w)}\n  /\n"
                          f"  ({promql.series(t, r.estimated_rows)} > 0)")
    realized_accuracy = f"{_sum_increase(t, 'model_feedback_correct_total', a)}\n  /\n  ({labels} > 0)"
    reference = f"max {promql.by(t, 'metric')} ({promql.gauge(t, 'model_reference_performance')})"
    drop = number(t.estimate_drop)
    rules: list[RecordingRule | AlertRule] = [
        RecordingRule(r.estimated_rows, _sum_increase(t, "model_estimated_rows_total", w)),
        *(RecordingRule(r.estimated_class[m], expr)
          for m, expr in class_metric_exprs(t, "model_estimated", w).items()),
        RecordingRule(r.estimated, by_metric_expr(t, estimated_accuracy, r.estimated_class)),
        *(RecordingRule(r.realized_class[m], expr)
          for m, expr in class_metric_exprs(t, "model_feedback", a).items()),
        RecordingRule(r.realized, by_metric_expr(t, realized_accuracy, r.realized_class)),
        RecordingRule(r.accuracy_gap,
                      f"(\n  {_sum_increase(t, 'model_feedback_expected_correct_total', a)}\n"
                      f"  - {_sum_increase(t, 'model_feedback_correct_total', a)}\n)\n/\n({labels} > 0)"),
        AlertRule(
            "ModelEstimatedPerformanceLow",
            f"{promql.series(t, r.estimated)}\n< {promql.on(t, 'metric')}\n({reference} - {drop})\n"
            f"and {promql.on(t)}\n{promql.series(t, r.estimated_rows)} >= {t.estimate_min_rows}",
            t.estimate_for,
            {"severity": "warning", "component": "model"},
            {
                "summary": f"Estimated {{{{ $labels.metric }}}} of model {MODEL} below its reference",
                "description": (
                    f"The {{{{ $labels.metric }}}} of model {MODEL} ({JOB}) estimated from its calibrated class "
                    f"probabilities is {RATIO_VALUE} over the last {w}, more than {drop} below its "
                    f"{labelled_value(t, 'model_reference_performance', 'metric', aggregate='max')} "
                    "on the labelled reference data, before any label arrived. The inputs moved to where the model "
                    "is less sure (covariate shift): see which feature drifted on the dashboard's Model quality "
                    "row. Realized performance needs labels (POST /feedback)."),
                "value": RATIO_VALUE,
            },
        ),
    ]
    return RuleGroup("inferwatch.performance", "performance.yml", tuple(rules))


def rule_groups(t: Thresholds = THRESHOLDS, for_overrides: Mapping[str, str] | None = None) -> tuple[RuleGroup, ...]:
    """Every rule group; ``for_overrides`` ({alert name: duration}) changes only ``for``."""
    groups = (recording_group(t), host_group(t), predictions_group(t), availability_group(t), quality_group(t),
              performance_group(t), genai_group(t), slo_group(t))
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
