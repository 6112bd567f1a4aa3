"""The dashboard as data: one description of its rows and panels, rendered twice.

The "ML model service" dashboard is described here once, from the two sources of truth: the
thresholds (:data:`inferwatch.contract.thresholds.THRESHOLDS` and the SLOs) and the metric
contract (every query is built by :mod:`inferwatch.render.promql`). Two renderers draw it:

* :mod:`inferwatch.render.grafana`: the Grafana dashboard JSON, built with Grafana's own SDK
  (grafana-foundation-sdk), for docker-compose and the Helm chart;
* :mod:`inferwatch.render.consoles`: Prometheus console templates, one page per row, for the
  native stack (``inferwatch up``), where no Grafana runs.

A panel says what it answers (title, description), what it shows (unit, min, max) and how
(queries with their legends, threshold steps, data links). Queries are PromQL written with
Grafana's variables (:data:`VARIABLES`, ``$__rate_interval``, ``$__range``); the console pages
substitute their own values for them (see :mod:`inferwatch.render.consoles`). Legends are
Grafana legend formats (``{{job}} {{route}}``).

Positions are on Grafana's grid (24 columns): :func:`layout` places the panels left to right, a
new line when one does not fit, and numbers them; both renderers keep that layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from inferwatch.contract.genai import LENGTH
from inferwatch.contract.inputs import InputFormat
from inferwatch.contract.slo import BURN_RATE_WINDOWS, PAGE, SLO
from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
from inferwatch.render import promql, slo_rules
from inferwatch.render.prometheus_rules import class_metric_exprs
from inferwatch.render.rules import GenAiRecords, QualityRecords, RecordingRecords, jaeger_slow_traces_url
from inferwatch.render.text import number, percent

DASHBOARD_UID = "inferwatch-ml-model-service"
DASHBOARD_TITLE = "ML model service"
GRID_COLUMNS = 24

# Grafana's own variables, as the panel queries spell them.
JOB = "$job"
JOB_CHOSEN = f'job=~"{JOB}"'
INSTANCE = "$instance"
ROUTE = "$route"
RATE_INTERVAL = "$__rate_interval"
TIME_RANGE = "$__range"
# The dashboard's time range in microseconds (Jaeger's unit), for links: Grafana's ${__from} and
# ${__to} are milliseconds.
GRAFANA_FROM_US = "${__from}000"
GRAFANA_TO_US = "${__to}000"

CPU_PANEL = "CPU usage"
LENGTH_REASON = f'reason="{LENGTH}"'

TIMESERIES_HEIGHT = 8
STAT_HEIGHT = 5
ROW_HEIGHT = 1


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and the legend of each series it returns."""

    expr: str
    legend: str  # a Grafana legend format: "{{job}} {{route}}"
    ref: str = "A"
    exemplar: bool = False  # Grafana draws the exemplars Prometheus stored for it


@dataclass(frozen=True)
class Step:
    """A threshold step: from ``value`` up (None: from the bottom) the panel is ``color``."""

    color: str
    value: float | None = None


# A panel without an alert threshold: one colour, nothing drawn.
NO_THRESHOLD: tuple[Step, ...] = (Step("green"),)


def above(value: float) -> tuple[Step, ...]:
    """Red from ``value`` up. Grafana colours a value equal to a step with that step; the alerts
    fire strictly above, so a panel turns red at the threshold itself, one tick early."""
    return Step("green"), Step("red", value)


def below(value: float) -> tuple[Step, ...]:
    """Red below ``value`` (a floor: an objective, an accuracy, a success ratio)."""
    return Step("red"), Step("green", value)


@dataclass(frozen=True)
class Link:
    """A data link: clicking a series opens ``url`` (Grafana's ``${__field.labels.x}`` expand)."""

    title: str
    url: str


@dataclass(frozen=True)
class Panel:
    kind: Literal["timeseries", "stat"]
    title: str
    description: str  # opens with the question the panel answers
    unit: str  # a Grafana unit id: s, percent, percentunit, reqps, cps, mbytes, short, none, suffix:x
    queries: tuple[Query, ...]
    steps: tuple[Step, ...] = NO_THRESHOLD
    minimum: float | None = 0
    maximum: float | None = None
    width: int = 12
    decimals: int | None = None
    links: tuple[Link, ...] = ()

    @property
    def height(self) -> int:
        return TIMESERIES_HEIGHT if self.kind == "timeseries" else STAT_HEIGHT

    @property
    def has_thresholds(self) -> bool:
        return self.steps != NO_THRESHOLD

    @property
    def threshold_lines(self) -> tuple[Step, ...]:
        """The steps drawn as lines across a graph (every step with a value)."""
        return tuple(step for step in self.steps if step.value is not None) if self.has_thresholds else ()


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]

    @property
    def slug(self) -> str:
        """"Service-level objectives" -> "service-level-objectives" (file names, anchors)."""
        return "-".join("".join(c if c.isalnum() else " " for c in self.title.lower()).split())


@dataclass(frozen=True)
class Variable:
    """A dashboard variable: the values of ``label_values(selector, label)``, several or All."""

    name: str
    label: str
    query: str
    description: str


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    refresh: str = "10s"
    time_from: str = "now-1h"

    @property
    def panels(self) -> tuple[Panel, ...]:
        return tuple(panel for row in self.rows for panel in row.panels)

    def panel(self, title: str) -> Panel:
        return next(panel for panel in self.panels if panel.title == title)


@dataclass(frozen=True)
class Placed:
    """A row or panel at its place on the grid, with its id (1, 2, ... in reading order)."""

    id: int
    x: int
    y: int
    item: Row | Panel = field(compare=False)


def layout(board: Board) -> list[Placed]:
    """Number the rows and panels and place them left to right, a new line when one does not fit."""
    placed: list[Placed] = []
    x = y = line_height = 0
    for row in board.rows:
        y += line_height
        placed.append(Placed(len(placed) + 1, 0, y, row))
        x, y, line_height = 0, y + ROW_HEIGHT, 0
        for panel in row.panels:
            if x + panel.width > GRID_COLUMNS:
                x, y, line_height = 0, y + line_height, 0
            placed.append(Placed(len(placed) + 1, x, y, panel))
            x += panel.width
            line_height = max(line_height, panel.height)
    return placed


# ---------------------------------------------------------------------------------------------
# Query helpers: the chosen models, instances and routes, through the selector and the marker
# ---------------------------------------------------------------------------------------------


def chosen(*extra: str) -> tuple[str, ...]:
    """Matchers for the models and instances chosen on the dashboard, and ``extra``."""
    return (JOB_CHOSEN, f'instance=~"{INSTANCE}"', *extra)


def http(*extra: str) -> tuple[str, ...]:
    """Like :func:`chosen`, for the HTTP metrics, which also carry the route."""
    return chosen(f'route=~"{ROUTE}"', *extra)


def gauge(t: Thresholds, metric: str, *by: str) -> str:
    """An inferwatch gauge of the chosen instances, summed by model and ``by``."""
    return f"sum {promql.by(t, *by)} ({promql.of_inferwatch(t, promql.series(t, metric, *chosen()))})"


def sum_rate(t: Thresholds, metric: str, matchers: tuple[str, ...], *by: str) -> str:
    return f"sum {promql.by(t, *by)} ({promql.rate(t, metric, RATE_INTERVAL, *matchers)})"


def sum_increase(t: Thresholds, metric: str, window: str, *by: str) -> str:
    """An inferwatch counter's increase over ``window`` for the chosen instances, per model and ``by``."""
    return f"sum {promql.by(t, *by)} ({promql.increase(t, metric, window, *chosen())})"


def legend(t: Thresholds, *labels: str) -> str:
    """``{{job}} {{route}}``: the model labels first, so every line says which model it is."""
    return " ".join("{{" + label + "}}" for label in (*t.model_labels, *labels))


def recorded(t: Thresholds, record: str) -> str:
    """A recording rule's series of the models chosen on the dashboard (the rule keeps
    inferwatch's series only already)."""
    return promql.series(t, record, JOB_CHOSEN)


def timeseries(title: str, description: str, unit: str, queries: Iterable[Query], **options) -> Panel:
    return Panel("timeseries", title, description, unit, tuple(queries), **options)


def stat(title: str, description: str, unit: str, query: Query, **options) -> Panel:
    return Panel("stat", title, description, unit, (query,), minimum=None, **{"width": 6, **options})


def refs(*queries: tuple[str, str]) -> tuple[Query, ...]:
    """Queries A, B, C... from (expr, legend) pairs."""
    return tuple(Query(expr, text, chr(ord("A") + i)) for i, (expr, text) in enumerate(queries))


# ---------------------------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------------------------


def latency_alert_panel_title(t: Thresholds) -> str:
    return f"p{percent(t.latency_quantile)} latency, {t.latency_window} (alert view)"


def failure_alert_panel_title(t: Thresholds) -> str:
    return f"Failure ratio, {t.failure_window} (alert view)"


def at_a_glance(t: Thresholds) -> Row:
    q = "p" + percent(t.latency_quantile)
    increase = f"increase({promql.series(t, 'prediction_failure_total', *chosen())}[{TIME_RANGE}])"
    return Row("At a glance", (
        stat(
            "Instances reporting",
            "Does every model report? The number of inferwatch instances per model whose metrics "
            "Prometheus has now (each proxy scraped directly, or each service behind the collector). "
            "A model missing here is what InferwatchMetricsAbsent fires on, a target that does not "
            "answer what InferwatchDown fires on.",
            "none", Query(f"count {promql.by(t)} ({promql.marker(t, JOB_CHOSEN)})", legend(t)),
            steps=below(1), decimals=0),
        stat(
            latency_alert_panel_title(t),
            f"Would HighPredictionLatency fire? The {q} of prediction latency over "
            f"{t.latency_window} per model, every instance summed: the alert's own expression (recording "
            f"rule). Red from {number(t.latency_seconds)} s; the alert fires above it for {t.latency_for}. "
            "Ignores the instance and route selectors, as the alert does.",
            "s", Query(recorded(t, RecordingRecords(t).latency_quantile), legend(t)), steps=above(t.latency_seconds)),
        stat(
            failure_alert_panel_title(t),
            f"Would HighPredictionFailureRate fire? The failed share of predictions over "
            f"{t.failure_window} per model, every instance summed: the alert's own expression (recording "
            f"rule). Red from {percent(t.failure_ratio)}%; the alert fires above it for {t.failure_for}. "
            "Empty while there are no predictions (0/0).",
            "percentunit", Query(recorded(t, RecordingRecords(t).failure_ratio), legend(t)), steps=above(t.failure_ratio)),
        stat(
            "Failed predictions in range",
            "How many predictions failed in the selected time range, per model? Every reason counted "
            "(bad input, model error, MLflow down or too slow); 'Failures by reason' says which.",
            "short", Query(f"sum {promql.by(t)} ({promql.of_inferwatch(t, increase)})", legend(t)),
            decimals=0),
    ))


def requests(t: Thresholds) -> Row:
    errors = http('status=~"4..|5.."')
    return Row("Requests", (
        timeseries(
            "Request rate by route",
            "How much traffic does each route get? HTTP requests per second that the service "
            "answered (any status), from http_requests_total, per model and route.",
            "reqps", [Query(sum_rate(t, "http_requests_total", http(), "route"), legend(t, "route"))]),
        timeseries(
            "Throughput reported by the service",
            "What request rate does each instance measure itself? http_requests_throughput, the "
            "seed's gauge: requests per second over the service's last host-sampling interval. "
            "Should follow 'Request rate by route'.",
            "reqps", [Query(gauge(t, "http_requests_throughput", "instance"), legend(t, "instance"))]),
        timeseries(
            "Errors by status",
            "Which errors does the service return, and where? 4xx and 5xx answers per second by "
            "model, route and status (400 bad input, 404 unknown path, 503 MLflow down, 504 MLflow too "
            "slow, 502 MLflow error).",
            "reqps", [Query(sum_rate(t, "http_requests_total", errors, "route", "status"),
                            legend(t, "status", "route"))]),
        timeseries(
            "Active requests",
            "How many requests are in flight right now? A count that keeps rising means requests "
            "are waiting on MLflow.",
            "short", [Query(gauge(t, "active_requests", "instance"), legend(t, "instance"))]),
    ))


def latency(t: Thresholds) -> Row:
    quantiles = sorted({0.5, t.latency_quantile, 0.99})
    buckets = sum_rate(t, "http_request_duration_seconds_bucket", http(), "le")
    latency_queries = [
        Query(f"histogram_quantile({number(q)}, {buckets})", legend(t) + " p" + percent(q),
              chr(ord("A") + i), exemplar=True)
        for i, q in enumerate(quantiles)
    ]
    seconds = number(t.latency_seconds)
    q = "p" + percent(t.latency_quantile)
    # A data link: clicking a model's line opens that model's slow traces of the dashboard's time
    # range (job is service.name through the collector, the path traces take).
    slow_traces = (Link(f"Traces slower than {seconds} s in this time range (Jaeger)",
                        jaeger_slow_traces_url(t, "${__field.labels.job}", GRAFANA_FROM_US, GRAFANA_TO_US)),)
    request = f"histogram_quantile({number(t.latency_quantile)}, " \
              f"{sum_rate(t, 'http_request_duration_seconds_bucket', chosen(t.latency_routes), 'le')})"
    model = f"histogram_quantile({number(t.latency_quantile)}, " \
            f"{sum_rate(t, 'upstream_request_duration_seconds_bucket', chosen(), 'le')})"
    return Row("Latency", (
        timeseries(
            "Request latency p50 / p95 / p99",
            f"How long do requests take? Latency quantiles of the selected routes per model, every "
            f"instance summed. The line is HighPredictionLatency's threshold, {seconds} s (a bucket edge); "
            f"the alert watches the {q} of /predict and /invocations over {t.latency_window}. The dots "
            "are exemplars: a slow, failed or sampled request each, whose trace opens in Jaeger "
            f"(click a line: that model's traces slower than {seconds} s in the time range).",
            "s", latency_queries, steps=above(t.latency_seconds), links=slow_traces),
        timeseries(
            f"Model time vs proxy time ({q})",
            f"How much of a prediction is the model? Per model, the {q} of the whole request (/predict "
            f"and /invocations), the {q} of the MLflow call alone (upstream_request_duration_seconds: "
            "model time) and their difference (proxy time: validation, forwarding, telemetry). "
            "When the request line rises with the model line, MLflow is slow; when they part, the "
            "proxy is. The dots are exemplars of the MLflow call.",
            "s", [
                Query(request, f"{legend(t)} request {q}"),
                Query(model, f"{legend(t)} model (MLflow call) {q}", "B", exemplar=True),
                Query(f"{request}\n-\n{model}", f"{legend(t)} proxy (difference) {q}", "C"),
            ], steps=above(t.latency_seconds), links=slow_traces),
    ))


def predictions(t: Thresholds) -> Row:
    success = sum_rate(t, "prediction_success_total", chosen())
    failure = sum_rate(t, "prediction_failure_total", chosen())
    # Success below this is failure above HighPredictionFailureRate's threshold.
    healthy_success = round(1 - t.failure_ratio, 9)
    return Row("Predictions", (
        timeseries(
            "Prediction success rate",
            f"What share of predictions does each model answer? Successes over all predictions. "
            f"The line is {percent(healthy_success)}%: below it the failure ratio is above "
            f"HighPredictionFailureRate's {percent(t.failure_ratio)}%. Empty while there are no "
            "predictions.",
            "percentunit", [Query(f"{success}\n/\n({success} + {failure})", legend(t))],
            steps=below(healthy_success), maximum=1, width=6),
        timeseries(
            "Predictions answered and failed",
            "How many predictions per second succeed and fail? prediction_success_total and "
            "prediction_failure_total per model, every instance summed.",
            "reqps", refs((success, legend(t) + " answered"), (failure, legend(t) + " failed")), width=6),
        timeseries(
            "Failures by reason",
            "Why do predictions fail? Failed predictions per second by model and reason: invalid_json, "
            "invalid_input, unsupported_media_type, payload_too_large, model_rejected, "
            "upstream_unavailable, upstream_timeout, upstream_error.",
            "reqps", [Query(sum_rate(t, "prediction_failure_by_reason_total", chosen(), "reason"),
                            legend(t, "reason"))], width=6),
        timeseries(
            "Inference log: records written and dropped",
            "Is every sampled prediction being logged? Inference log records written per second by "
            "destination (file, otlp) and dropped per second by reason: queue_full (the writer cannot "
            "keep up), write_error (a full or failing disk), export_error (the collector is down or "
            "slow), encode_error (a bug). A drop never fails a prediction; all zero while the log is off "
            "(docs/inference-logging.md).",
            "short", refs(
                (sum_rate(t, "inference_log_records_total", chosen(), "destination"),
                 legend(t) + " written {{destination}}"),
                (sum_rate(t, "inference_log_dropped_total", chosen(), "reason"), legend(t) + " dropped {{reason}}"),
            ), width=6),
        timeseries(
            "Predictions by input format",
            "How do clients send their predictions? Prediction requests per second by model and input "
            f"format: {', '.join(f.value for f in InputFormat if f is not InputFormat.OTHER)}, and "
            f"{InputFormat.OTHER.value} (a body MLflow will refuse, or one the proxy refused before reading it).",
            "reqps", [Query(sum_rate(t, "prediction_requests_by_format_total", chosen(), "format"),
                            legend(t, "format"))], width=24),
    ))


def quality(t: Thresholds) -> Row:
    r = QualityRecords(t)

    def recorded_series(name: str) -> str:
        """A quality recording rule's series of the chosen models (already inferwatch's only)."""
        return promql.series(t, name, JOB_CHOSEN)

    def expected(metric: str, *by: str) -> str:
        return f"max {promql.by(t, *by, 'bin')} ({promql.gauge(t, metric, JOB_CHOSEN)})"

    drift = (Step("green"), Step("yellow", t.drift_watch), Step("red", t.drift_act))
    w = t.drift_window
    answers = sum_increase(t, "model_prediction_bin_total", w)
    missing = sum_rate(t, "model_feature_missing_total", chosen(), "feature")
    return Row("Model quality", (
        timeseries(
            "Input drift (PSI) by feature",
            f"Do the inputs still look like the training data? The population stability index of each "
            f"feature over the last {w}, every instance's rows summed, against the reference profile. "
            f"Yellow from {number(t.drift_watch)} (worth a look), red from {number(t.drift_act)}: "
            f"ModelInputDrift fires above it for {t.drift_for} when the PSI also exceeds its critical value "
            f"for the window's rows ('Drift against its critical value') and {t.drift_min_rows_per_bin} rows per "
            "bin are counted.",
            "short", [Query(recorded_series(r.feature_psi), legend(t, "feature"))], steps=drift),
        timeseries(
            "Largest bin shift by feature",
            f"Which feature moved, and how much? The largest difference, over a feature's bins, between "
            f"its share of the rows of the last {w} and its share in training (0.2: a fifth of the rows "
            "moved into or out of one bin).",
            "percentunit", [Query(
                f"max {promql.by(t, 'feature')} (abs(\n  {recorded_series(r.feature_share)}\n"
                f"  - {promql.on(t, 'feature', 'bin')}\n  {expected('model_feature_expected_share', 'feature')}\n))",
                legend(t, "feature"))], maximum=1),
        timeseries(
            "Prediction drift (PSI)",
            f"Does the model still answer as it did on the training data? PSI of its answers (classes or "
            f"bins) over the last {w} against the reference. ModelPredictionDrift fires above "
            f"{number(t.drift_act)} for {t.drift_for}.",
            "short", [Query(recorded_series(r.prediction_psi), legend(t))], steps=drift, width=8),
        timeseries(
            "Prediction shares against the reference",
            f"What does the model predict? Each class's (or bin's) share of the answers of the last {w}, "
            "and its share on the training data (the 'reference' lines).",
            "percentunit", refs(
                (f"{sum_increase(t, 'model_prediction_bin_total', w, 'bin')}\n"
                 f"/ ignoring(bin) group_left()\n({answers} > 0)", legend(t, "bin")),
                (expected("model_prediction_expected_share"), legend(t, "bin") + " reference"),
            ), maximum=1, width=8),
        timeseries(
            "Missing values by feature",
            "Which features arrive empty? The share of each feature's values that were null, NaN or "
            "absent, among the rows the model answered.",
            "percentunit", [Query(
                f"{missing}\n/\n({missing}\n + {sum_rate(t, 'model_feature_bin_total', chosen(), 'feature')})",
                legend(t, "feature"))], maximum=1, width=8),
        timeseries(
            "Signature violations and unreadable bodies",
            "Do clients send what the model's signature expects? Values per second that violate it, by "
            "column and kind (missing, wrong_type; unexpected columns all count as __other__), and "
            f"bodies whose rows could not be read. ModelInputViolations fires when one column and kind "
            f"exceeds {percent(t.violation_ratio)}% of the rows for {t.violation_for}.",
            "cps", refs(
                (sum_rate(t, "model_input_violation_total", chosen(), "column", "kind"), legend(t, "column", "kind")),
                (sum_rate(t, "model_input_unreadable_total", chosen(), "format"), legend(t) + " unreadable {{format}}"),
                (sum_rate(t, "model_input_rows_total", chosen()), legend(t) + " rows sent"),
            ), width=8),
        timeseries(
            "Online accuracy",
            f"Is the model still right? The share of feedback labels equal to the predicted class over "
            f"the last {t.accuracy_window}. The line is ModelAccuracyLow's floor, "
            f"{percent(t.accuracy_floor)}% (judged once {t.accuracy_min_labels} labels arrived).",
            "percentunit", [Query(
                f"{sum_increase(t, 'model_feedback_correct_total', t.accuracy_window)}\n/\n"
                f"({sum_increase(t, 'model_feedback_labels_total', t.accuracy_window)} > 0)", legend(t))],
            steps=below(t.accuracy_floor), maximum=1, width=8),
        timeseries(
            "Feedback labels and refusals",
            "Is ground truth arriving? Labels per second matched to their prediction, and feedback "
            "requests refused per second by reason (unknown_prediction, token_expired, invalid_label, ...).",
            "cps", refs(
                (sum_rate(t, "model_feedback_labels_total", chosen()), legend(t) + " labels"),
                (sum_rate(t, "model_feedback_rejected_total", chosen(), "reason"), legend(t) + " refused {{reason}}"),
            ), width=8),
        timeseries(
            "Regression error from feedback",
            "How far off is a regressor? Mean absolute error, root mean squared error and the 90th "
            "percentile of the absolute error of the predictions that got a label, per model version.",
            "short", refs(
                (f"{sum_rate(t, 'model_feedback_absolute_error_sum', chosen())}\n/\n"
                 f"{sum_rate(t, 'model_feedback_absolute_error_count', chosen())}", legend(t) + " MAE"),
                (f"sqrt(\n  {sum_rate(t, 'model_feedback_squared_error_total', chosen())}\n  /\n"
                 f"  {sum_rate(t, 'model_feedback_absolute_error_count', chosen())}\n)", legend(t) + " RMSE"),
                (f"histogram_quantile(0.9, {sum_rate(t, 'model_feedback_absolute_error_bucket', chosen(), 'le')})",
                 legend(t) + " p90"),
            ), width=8),
        timeseries(
            "Predictions by model version",
            "Which model versions answer, and how much (a canary beside the stable version)? "
            "Predictions answered per second by model and version.",
            "reqps", [Query(sum_rate(t, "prediction_success_total", chosen()), legend(t))], width=8),
        stat(
            "Models loaded",
            "Which model does each proxy front, and did it load a signature and a reference profile? "
            "Instances per model, version and flavor.",
            "short", Query(gauge(t, "model_info", "flavor", "signature", "reference"),
                           legend(t) + " {{flavor}} signature={{signature}} reference={{reference}}"),
            decimals=0),
    ))


def genai(t: Thresholds) -> Row:
    """GenAI models (chat, completions, embeddings): tokens, durations, cut-off answers, errors, ratings."""
    r = GenAiRecords(t)

    def recorded_series(name: str) -> str:
        return promql.series(t, name, JOB_CHOSEN)

    w, q = t.genai_window, "p" + percent(t.latency_quantile)
    missing = sum_rate(t, "gen_ai_usage_missing_total", chosen(), "operation")
    answered = sum_rate(t, "gen_ai_client_operation_duration_seconds_count", chosen('error_type=""'), "operation")
    # The alerts' shares, over their windows, from the counters of the chosen models.
    choices = sum_increase(t, "gen_ai_response_finish_reasons_total", w)
    cut_off = (f"sum {promql.by(t)} ("
               f"{promql.increase(t, 'gen_ai_response_finish_reasons_total', w, *chosen(LENGTH_REASON))})")
    ratings = sum_increase(t, "gen_ai_feedback_ratings_total", t.genai_satisfaction_window)
    satisfaction = sum_increase(t, "gen_ai_feedback_satisfaction_total", t.genai_satisfaction_window)
    quantile = number(t.latency_quantile)
    durations = sum_rate(t, "gen_ai_client_operation_duration_seconds_bucket", chosen(), "operation", "le")
    duration_quantile = f"histogram_quantile({quantile}, {durations})"
    tokens = sum_rate(t, "gen_ai_client_token_usage_bucket", chosen(), "token_type", "le")
    tokens_quantile = f"histogram_quantile({quantile}, {tokens})"
    return Row("GenAI", (
        timeseries(
            "Tokens per second, in and out",
            "How many tokens does each GenAI model take in and give out? Input and output tokens per "
            "second as the model's answers report them (usage), every instance summed; embeddings "
            "have input tokens only.",
            "short", [Query(recorded_series(r.tokens), legend(t, "token_type"))], width=8),
        timeseries(
            f"GenAI duration {q} by operation",
            f"How long do chat, completion and embedding calls take? The {q} of the MLflow call "
            f"(gen_ai.client.operation.duration) per operation (recorded over {w} as {r.duration}).",
            "s", [Query(duration_quantile, legend(t, "operation"))], width=8),
        timeseries(
            "Answers cut off by the token limit",
            f"How often does an answer stop at its token limit? The share of answer choices whose finish "
            f"reason is length over {w}. GenAiAnswersCutOff fires above the line "
            f"({percent(t.genai_cutoff_ratio)}%) once the window holds {t.genai_min_choices} choices.",
            "percentunit", [Query(f"{cut_off}\n/\n({choices} > 0)", legend(t))],
            steps=above(t.genai_cutoff_ratio), maximum=1, width=8),
        timeseries(
            "GenAI errors by type",
            "Why do GenAI calls fail? Failed calls per second by model and error type (the prediction's "
            "failure reason: model_rejected, upstream_timeout, ...).",
            "reqps", [Query(recorded_series(r.errors), legend(t, "error_type"))], width=8),
        timeseries(
            "Tokens per request",
            "How long are prompts and answers? Input and output tokens per request (the mean over "
            f"{w}, and the {q}); and answered requests per second, and those whose answer reported no "
            "usage (no tokens are guessed for them).",
            "short", refs((recorded_series(r.tokens_per_request), legend(t, "token_type") + " mean"),
                          (tokens_quantile, legend(t, "token_type") + f" {q}"),
                          (missing, legend(t, "operation") + " without usage"),
                          (answered, legend(t, "operation") + " answered")), width=8),
        timeseries(
            "User satisfaction",
            f"Do users like the answers? The mean rating over {t.genai_satisfaction_window} (thumbs up "
            "counts 1, down 0; a score from 1 to --feedback-score-max in between), from POST /feedback. "
            f"GenAiSatisfactionLow fires below the line ({percent(t.genai_satisfaction_floor)}%) once "
            f"{t.genai_min_ratings} ratings arrived.",
            "percentunit", [Query(f"{satisfaction}\n/\n({ratings} > 0)", legend(t))],
            steps=below(t.genai_satisfaction_floor), maximum=1, width=8),
    ))


def performance_queries(t: Thresholds, prefix: str, rows: str, correct: str, window: str,
                        suffix: str) -> list[tuple[str, str]]:
    """Accuracy, and precision, recall and F1 averaged over the classes, of the chosen instances'
    ``<prefix>_*`` counters over ``window``, every instance summed before the ratios (the
    recording rules' formulas, rules/performance.yml)."""
    def summed(counter: str, w: str, *by: str) -> str:
        return sum_increase(t, counter, w, *by)

    accuracy = f"{summed(correct, window)}\n/\n({summed(rows, window)} > 0)"
    by_class = class_metric_exprs(t, prefix, window, summed)
    return [(accuracy, legend(t) + f" accuracy {suffix}"),
            *((f"avg {promql.by(t)} (\n  {expr}\n)", legend(t) + f" {metric} {suffix}")
              for metric, expr in by_class.items())]


def estimated_performance(t: Thresholds) -> Row:
    """Estimated performance from the model's own confidence, the realized one from labels, their
    gap (concept drift), data quality against the profile and drift against its critical value."""
    q = QualityRecords(t)
    w, a = t.estimate_window, t.accuracy_window
    reference = (f"max {promql.by(t, 'metric')} "
                 f"({promql.gauge(t, 'model_reference_performance', *chosen())})")
    labels = sum_increase(t, "model_feedback_labels_total", a)
    issues = sum_rate(t, "model_input_issue_total", chosen(), "feature", "issue")
    sent = sum_rate(t, "model_input_rows_total", chosen())
    return Row("Estimated performance and data quality", (
        timeseries(
            "Estimated performance against the reference",
            f"Is the model getting worse, before any label arrives? Accuracy, precision, recall and F1 of "
            f"the last {w} estimated from the model's calibrated class probabilities (the expected "
            "confusion matrix, every instance summed), and the same metrics on the labelled reference data "
            f"(the 'reference' lines). ModelEstimatedPerformanceLow fires when an estimate is more than "
            f"{number(t.estimate_drop)} below its reference for {t.estimate_for}, once {t.estimate_min_rows} "
            "rows are in the window. Only for classifiers profiled with --labels.",
            "percentunit", refs(
                *performance_queries(t, "model_estimated", "model_estimated_rows_total",
                                     "model_estimated_correct_total", w, "estimated"),
                (reference, legend(t, "metric") + " reference"),
            ), maximum=1, width=8),
        timeseries(
            "Realized performance from feedback",
            f"How right was the model, by the labels that came back? Accuracy of the feedback labels of "
            f"the last {a} (POST /feedback), and precision, recall and F1 for a classifier whose answers "
            "carry class probabilities. Labels come late: compare with the estimate of the predictions "
            "they judge, not of the last hour.",
            "percentunit", refs(*performance_queries(t, "model_feedback", "model_feedback_labels_total",
                                                     "model_feedback_correct_total", a, "realized")),
            maximum=1, width=8),
        timeseries(
            "Estimated minus realized accuracy (concept drift)",
            "Does the model know how good it is? On exactly the rows that got a label: the accuracy its "
            "calibrated confidence expected, minus the accuracy the labels gave. Near 0 the estimate holds; "
            "rising, the same inputs now mean something else (concept drift), or the calibration no longer "
            "fits: what the estimate alone cannot see.",
            "percentunit", [Query(
                f"(\n  {sum_increase(t, 'model_feedback_expected_correct_total', a)}\n"
                f"  - {sum_increase(t, 'model_feedback_correct_total', a)}\n)\n/\n({labels} > 0)",
                legend(t) + " expected - realized")],
            minimum=None, width=8),
        timeseries(
            "Data quality by feature",
            "Do the inputs still fit the reference? Per feature, the share of the rows sent whose value is "
            "missing, of the wrong type, below the reference's minimum, above its maximum, or a category the "
            "reference never had (by issue), rejected requests included.",
            "percentunit", [Query(f"{issues}\n/ ignoring(feature, issue) group_left()\n({sent} > 0)",
                                  legend(t, "feature", "issue"))],
            maximum=1, width=10),
        timeseries(
            "Drift against its critical value",
            f"Is a feature's drift more than chance? Its PSI over {t.drift_window} divided by the PSI the "
            f"window's rows would exceed by chance with probability {percent(t.drift_alpha)}% (chi-square, "
            "from the window's and the reference's row counts). Above 1 the shift is significant; "
            f"ModelInputDrift also needs the PSI above {number(t.drift_act)}. Few rows raise the critical "
            "value; many lower it.",
            "short", [Query(f"{promql.series(t, q.feature_psi, JOB_CHOSEN)}\n/ {promql.on(t, 'feature')}\n"
                            f"{promql.series(t, q.feature_psi_critical, JOB_CHOSEN)}", legend(t, "feature"))],
            steps=above(1), width=10),
        stat(
            "Reference rows",
            "How much data is each model's reference profile built on? Fewer reference rows make sampling "
            "noise in the reference itself, which the drift critical value allows for.",
            "short", Query(f"max {promql.by(t)} ({promql.gauge(t, 'model_reference_rows', *chosen())})",
                           legend(t)), width=4, decimals=0),
    ))


def _slo_series(record: str, slo: SLO | None = None) -> str:
    """A recorded SLO series of the chosen models. Recorded series hold inferwatch's selected
    series only, per model, without the selector's other labels: only the models are chosen."""
    matchers = ", ".join(([f'slo="{slo.name}"'] if slo else []) + [JOB_CHOSEN])
    return f"{record}{{{matchers}}}"


def _slo_sli(t: Thresholds, slo: SLO) -> Panel:
    period = slo.period
    windows = (slo_rules.RATE_WINDOW, "1h", period)
    return timeseries(
        f"{slo.name.capitalize()} SLI against the objective",
        f"Does each model meet its {slo.name} SLO? The share of good events over {slo_rules.RATE_WINDOW}, 1h "
        f"and the {period} period so far, per model. The line is the objective: {slo_rules.objective_text(slo)}; "
        "below it the error budget burns faster than the period allows. Empty without valid events (0/0).",
        "percentunit",
        refs(*((f"1 - {_slo_series(slo_rules.error_ratio(window), slo)}", legend(t) + f" over {window}")
               for window in windows)),
        steps=below(slo.objective), minimum=None, maximum=1, width=6)


def _slo_budget(t: Thresholds) -> Panel:
    return timeseries(
        "Error budget remaining",
        f"How much of each SLO's error budget is left over its period? 1 - (bad share over the period) / "
        f"(1 - objective), per model and SLO: 100% untouched, 0% spent, below 0 overspent. Read from "
        f"{slo_rules.BUDGET_REMAINING}, which sums the 5m rates the rules recorded over the period, so it "
        "counts only what Prometheus kept (see the retention in docs/slo.md).",
        "percentunit", [Query(_slo_series(slo_rules.BUDGET_REMAINING), legend(t, "slo"))],
        steps=below(0), minimum=None, maximum=1, width=6)


def _slo_burn_rate(t: Thresholds) -> Panel:
    period = t.slos[0].period  # the factors below are those of the first SLO's period

    def fires_at(severity: str) -> str:
        return " or ".join(f"{number(w.factor(period))}x over {w.long}" for w in BURN_RATE_WINDOWS
                           if w.severity == severity)

    page = [w for w in BURN_RATE_WINDOWS if w.severity == PAGE]
    shown = [(slo, w.long) for slo in t.slos for w in page]
    fastest = page[0].factor(period)
    return timeseries(
        "Error budget burn rate",
        f"How fast does each SLO spend its error budget? The bad share over {' and '.join(w.long for w in page)} "
        f"divided by the budget (1 - objective), per model and SLO: 1x spends the budget exactly in {period}. "
        f"The page fires at {fires_at(PAGE)} (red from {number(fastest)}x), the ticket at {fires_at('ticket')} "
        "(orange from 1x), each once its short window agrees.",
        "suffix:x",
        refs(*((f"{_slo_series(slo_rules.error_ratio(window), slo)} / {number(slo.error_budget)}",
                legend(t) + f" {slo.name} {window}") for slo, window in shown)),
        steps=(Step("green"), Step("orange", 1), Step("red", fastest)), width=6)


def slos(t: Thresholds) -> tuple[Row, ...]:
    if not t.slos:
        return ()
    return (Row("Service-level objectives", (*(_slo_sli(t, slo) for slo in t.slos), _slo_budget(t),
                                             _slo_burn_rate(t))),)


def host(t: Thresholds) -> Row:
    cpu = number(t.cpu_percent)
    return Row("Host", (
        timeseries(
            CPU_PANEL,
            f"Is the host's CPU saturated? CPU used in percent, per instance. The line is "
            f"HighCPUUsage's threshold, {cpu}%; the alert fires above it for {t.cpu_for}.",
            "percent", [Query(gauge(t, "system_cpu_usage", "instance"), legend(t, "instance"))],
            steps=above(t.cpu_percent), maximum=100, width=6),
        timeseries(
            "Memory used",
            "Is the host running out of memory? Memory used in percent of the total, per instance.",
            "percent", [Query(gauge(t, "system_ram_usage", "instance"), legend(t, "instance"))],
            maximum=100, width=6),
        timeseries(
            "Memory used (MiB)",
            "How much memory does the host use? Memory used in MiB, per instance.",
            "mbytes", [Query(gauge(t, "system_memory_usage_mb", "instance"), legend(t, "instance"))],
            width=6),
        timeseries(
            "Disk used",
            "Is the disk filling up? Space used in percent at the path the service watches "
            "(--disk-path), per instance and mount point.",
            "percent",
            [Query(gauge(t, "system_disk_usage", "instance", "mountpoint"), legend(t, "instance", "mountpoint"))],
            maximum=100, width=6),
    ))


def variables(t: Thresholds) -> tuple[Variable, ...]:
    return (
        # The marker exists from start-up, before any request, and only for inferwatch.
        Variable("job", "Model (job)", f"label_values({promql.marker(t)}, job)",
                 "Models: the job label of inferwatch's series (service.name, i.e. "
                 "OTEL_SERVICE_NAME, through the collector; the scrape job's name when "
                 "Prometheus scrapes the proxies directly)."),
        Variable("instance", "Instance", f"label_values({promql.marker(t, JOB_CHOSEN)}, instance)",
                 "Service instances of the chosen models (the instance label: "
                 "service.instance.id, host name and port by default, through the "
                 "collector; host:port of the target when scraped directly)."),
        Variable("route", "Route", f"label_values({promql.series(t, 'http_requests_total', *chosen())}, route)",
                 "Route templates (/predict, /invocations; unknown paths are 'unmatched')."),
    )


def board(t: Thresholds = THRESHOLDS) -> Board:
    return Board(
        uid=DASHBOARD_UID,
        title=DASHBOARD_TITLE,
        description="inferwatch: the MLflow model proxy's requests, latency, predictions and host. "
                    "Generated by python -m inferwatch.render --write from service/inferwatch/render/panels.py; "
                    "edit that module, not this file.",
        tags=("inferwatch", "mlflow"),
        variables=variables(t),
        rows=(at_a_glance(t), requests(t), latency(t), predictions(t), quality(t), estimated_performance(t),
              genai(t), *slos(t), host(t)),
    )
