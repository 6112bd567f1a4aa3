"""The metric contract: OpenTelemetry names in, the dashboards' Prometheus names out.

This table is the single source of truth for the translation docs/metrics.md describes. It is
applied in two places and must never be written down a second time:

* in-process, by :func:`inferwatch.proxy.telemetry.translate.to_prometheus`, which the service's
  ``/metrics`` reader runs on every collection before opentelemetry-exporter-prometheus renders
  the text format;
* in the OpenTelemetry Collector, by the transform-processor statements that
  :mod:`inferwatch.render.collector` renders from this same table (``python -m inferwatch.render
  --check`` fails when ``otel-collector/config.yaml`` does not hold exactly those statements).

Each entry names one OTel instrument, the Prometheus family it becomes, how values are scaled
(ratio -> percent, bytes -> MiB), and which attributes survive as labels (renamed). Attributes not
kept are summed away, so dropping a label never splits or duplicates a series. Prometheus names
are complete: the exporters are given an empty unit, so no suffix is ever appended twice.

The table is data only: no telemetry SDK is imported here, so every room can read it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from inferwatch.contract import genai

# OpenTelemetry instrument names the service emits (semantic conventions where one exists).
HTTP_SERVER_DURATION = "http.server.request.duration"
# The MLflow call, as the requests instrumentation measures it around each upstream request.
HTTP_CLIENT_DURATION = "http.client.request.duration"
HTTP_SERVER_ACTIVE_REQUESTS = "http.server.active_requests"
HTTP_SERVER_THROUGHPUT = "inferwatch.http.server.throughput"
PREDICTION_SUCCESSES = "inferwatch.prediction.successes"
PREDICTION_FAILURES = "inferwatch.prediction.failures"
PREDICTION_REQUESTS = "inferwatch.prediction.requests"
SYSTEM_CPU_UTILIZATION = "system.cpu.utilization"
SYSTEM_MEMORY_UTILIZATION = "system.memory.utilization"
SYSTEM_MEMORY_USAGE = "system.memory.usage"
SYSTEM_FILESYSTEM_UTILIZATION = "system.filesystem.utilization"
# Model quality (inferwatch.proxy.quality, inferwatch.proxy.feedback); docs/model-quality.md.
MODEL_INFO = "inferwatch.model.info"
MODEL_FEATURE_VALUES = "inferwatch.model.feature.values"
MODEL_FEATURE_EXPECTED_SHARE = "inferwatch.model.feature.expected_share"
MODEL_FEATURE_MISSING = "inferwatch.model.feature.missing"
MODEL_INPUT_ROWS = "inferwatch.model.input.rows"
MODEL_INPUT_VIOLATIONS = "inferwatch.model.input.violations"
MODEL_INPUT_UNREADABLE = "inferwatch.model.input.unreadable"
MODEL_PREDICTION_VALUES = "inferwatch.model.prediction.values"
MODEL_PREDICTION_EXPECTED_SHARE = "inferwatch.model.prediction.expected_share"
MODEL_FEEDBACK_LABELS = "inferwatch.model.feedback.labels"
MODEL_FEEDBACK_CORRECT = "inferwatch.model.feedback.correct"
MODEL_FEEDBACK_ABSOLUTE_ERROR = "inferwatch.model.feedback.absolute_error"
MODEL_FEEDBACK_SQUARED_ERROR = "inferwatch.model.feedback.squared_error"
MODEL_FEEDBACK_REJECTED = "inferwatch.model.feedback.rejected"
# The inference log (inferwatch.proxy.inference_log); docs/inference-logging.md.
INFERENCE_LOG_RECORDS = "inferwatch.inference_log.records"
INFERENCE_LOG_DROPPED = "inferwatch.inference_log.dropped"
# Data quality against the profile, and estimated performance (inferwatch.proxy.quality,
# inferwatch.proxy.estimation, inferwatch.proxy.feedback); docs/model-quality.md.
MODEL_INPUT_ISSUES = "inferwatch.model.input.issues"
MODEL_REFERENCE_ROWS = "inferwatch.model.reference.rows"
MODEL_REFERENCE_PERFORMANCE = "inferwatch.model.reference.performance"
MODEL_ESTIMATED_ROWS = "inferwatch.model.estimated.rows"
MODEL_ESTIMATED_CORRECT = "inferwatch.model.estimated.correct"
MODEL_ESTIMATED_TRUE_POSITIVE = "inferwatch.model.estimated.true_positive"
MODEL_ESTIMATED_PREDICTED = "inferwatch.model.estimated.predicted"
MODEL_ESTIMATED_ACTUAL = "inferwatch.model.estimated.actual"
MODEL_FEEDBACK_EXPECTED_CORRECT = "inferwatch.model.feedback.expected_correct"
MODEL_FEEDBACK_TRUE_POSITIVE = "inferwatch.model.feedback.true_positive"
MODEL_FEEDBACK_PREDICTED = "inferwatch.model.feedback.predicted"
MODEL_FEEDBACK_ACTUAL = "inferwatch.model.feedback.actual"

# Attribute keys used by the mapping.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
ERROR_TYPE = "error.type"
URL_SCHEME = "url.scheme"
FILESYSTEM_MOUNTPOINT = "system.filesystem.mountpoint"
MODEL_NAME = "inferwatch.model.name"
MODEL_VERSION = "inferwatch.model.version"
MODEL_FLAVOR = "inferwatch.model.flavor"
MODEL_SIGNATURE = "inferwatch.model.signature"
MODEL_REFERENCE = "inferwatch.model.reference"
MODEL_FEATURE = "inferwatch.model.feature"
MODEL_BIN = "inferwatch.model.bin"
MODEL_INPUT_COLUMN = "inferwatch.model.input.column"
MODEL_VIOLATION_KIND = "inferwatch.model.input.violation"
MODEL_INPUT_FORMAT = "inferwatch.model.input.format"
INFERENCE_LOG_DESTINATION = "inferwatch.inference_log.destination"
MODEL_INPUT_ISSUE = "inferwatch.model.input.issue"
MODEL_CLASS = "inferwatch.model.class"
MODEL_PERFORMANCE_METRIC = "inferwatch.model.performance.metric"

# Requests that matched no route carry no http.route; they all share this label value, so
# scanning random paths cannot create new series.
UNMATCHED_ROUTE = "unmatched"
# An MLflow call that got no HTTP answer (connection refused or reset, timed out) has no status.
NO_UPSTREAM_STATUS = "none"

# The marker that tells inferwatch's series apart from another job's same-named ones (`up`,
# `system_cpu_usage` and even `http_requests_total` are common names). Every inferwatch process
# sets the resource attribute telemetry.distro.name = "inferwatch" (inferwatch.proxy.telemetry;
# an OTEL_RESOURCE_ATTRIBUTES value cannot replace it), and both ways to Prometheus publish the
# resource on `target_info` from start-up: the service's /metrics (scraped: the target's job and
# instance) and the collector's exporter (job = service.name, instance = service.instance.id).
# So `target_info{telemetry_distro_name="inferwatch"}` exists exactly for inferwatch's
# (job, instance) pairs, and the rules keep a series only `and on (job, instance)` that marker.
TELEMETRY_DISTRO_NAME = "telemetry.distro.name"
TELEMETRY_DISTRO_VERSION = "telemetry.distro.version"
DISTRO_NAME = "inferwatch"
# service.name when OTEL_SERVICE_NAME is unset: the job through the collector, and the service
# whose traces Jaeger holds.
DEFAULT_SERVICE_NAME = "inferwatch"
MARKER_METRIC = "target_info"
MARKER_LABEL = "telemetry_distro_name"  # TELEMETRY_DISTRO_NAME as both exporters write the label
# The labels that name one scrape target's (one process's) series, on either path.
TARGET_LABELS = ("job", "instance")

# Bucket edges of the request-duration histogram (and of the MLflow call's, so the two quantiles
# compare edge for edge), in seconds. 2 s is the latency alert's threshold and must be an edge, or
# histogram_quantile() would interpolate across it.
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
# Every prediction and model-quality series says which model and version answered, so two
# versions side by side (a canary) stay apart.
_MODEL_LABELS = {MODEL_NAME: "model", MODEL_VERSION: "model_version"}
_FEATURE_LABELS = {**_MODEL_LABELS, MODEL_FEATURE: "feature"}
# GenAI series: the model, the operation (chat, text_completion, embeddings) and the model that
# answered as the answer names it (bounded: genai.MAX_RESPONSE_MODELS, then "other").
_GEN_AI_LABELS = {**_MODEL_LABELS, genai.GEN_AI_OPERATION_NAME: "operation",
                  genai.GEN_AI_RESPONSE_MODEL: "response_model"}
_CLASS_LABELS = {**_MODEL_LABELS, MODEL_CLASS: "class"}

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
        HTTP_CLIENT_DURATION,
        "upstream_request_duration_seconds",
        PrometheusType.HISTOGRAM,
        "Duration of the MLflow model server call in seconds (model time; the rest of a request is proxy time).",
        labels={HTTP_RESPONSE_STATUS_CODE: "status"},
        label_defaults={"status": NO_UPSTREAM_STATUS},
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
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        PREDICTION_FAILURES,
        "prediction_failure_total",
        PrometheusType.COUNTER,
        "Predictions that failed: bad input, model error, upstream down or timed out.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        PREDICTION_FAILURES,
        "prediction_failure_by_reason_total",
        PrometheusType.COUNTER,
        "Failed predictions by reason.",
        labels={**_MODEL_LABELS, ERROR_TYPE: "reason"},
    ),
    MetricMapping(
        PREDICTION_REQUESTS,
        "prediction_requests_by_format_total",
        PrometheusType.COUNTER,
        "Prediction requests by input format (dataframe_split, ..., chat, completions, embeddings, csv, "
        "parquet, other); they sum to success plus failure.",
        labels={**_MODEL_LABELS, MODEL_INPUT_FORMAT: "format"},
    ),
    MetricMapping(
        genai.GEN_AI_CLIENT_TOKEN_USAGE,
        "gen_ai_client_token_usage",
        PrometheusType.HISTOGRAM,
        "Tokens per GenAI request as the model reported them (usage), by operation and token type "
        "(input, output); the semantic conventions' buckets.",
        labels=_GEN_AI_LABELS | {genai.GEN_AI_TOKEN_TYPE: "token_type"},
    ),
    MetricMapping(
        genai.GEN_AI_CLIENT_OPERATION_DURATION,
        "gen_ai_client_operation_duration_seconds",
        PrometheusType.HISTOGRAM,
        "Duration of the MLflow call of a GenAI request in seconds, by operation; error_type on failures.",
        labels=_GEN_AI_LABELS | {ERROR_TYPE: "error_type"},
    ),
    MetricMapping(
        genai.GEN_AI_FINISH_REASONS,
        "gen_ai_response_finish_reasons_total",
        PrometheusType.COUNTER,
        "Choices of GenAI answers by finish reason (stop, length, content_filter, tool_calls, "
        "function_call, other).",
        labels={**_MODEL_LABELS, genai.GEN_AI_OPERATION_NAME: "operation", genai.GEN_AI_FINISH_REASON: "reason"},
    ),
    MetricMapping(
        genai.GEN_AI_USAGE_MISSING,
        "gen_ai_usage_missing_total",
        PrometheusType.COUNTER,
        "Answered GenAI requests whose answer reported no token usage (nothing is guessed for them).",
        labels={**_MODEL_LABELS, genai.GEN_AI_OPERATION_NAME: "operation"},
    ),
    MetricMapping(
        genai.GEN_AI_RATINGS,
        "gen_ai_feedback_ratings_total",
        PrometheusType.COUNTER,
        "Ratings of GenAI answers received on POST /feedback.",
        labels={**_MODEL_LABELS, genai.GEN_AI_OPERATION_NAME: "operation"},
    ),
    MetricMapping(
        genai.GEN_AI_SATISFACTION,
        "gen_ai_feedback_satisfaction_total",
        PrometheusType.COUNTER,
        "Sum of the ratings of GenAI answers, each from 0 (thumbs down, the lowest score) to 1 "
        "(thumbs up, the highest): over gen_ai_feedback_ratings_total, the satisfaction rate.",
        labels={**_MODEL_LABELS, genai.GEN_AI_OPERATION_NAME: "operation"},
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
    MetricMapping(
        MODEL_INFO,
        "model_info",
        PrometheusType.GAUGE,
        "The model the proxy fronts (always 1): flavor, and whether a signature and a reference profile are loaded.",
        labels={**_MODEL_LABELS, MODEL_FLAVOR: "flavor", MODEL_SIGNATURE: "signature", MODEL_REFERENCE: "reference"},
    ),
    MetricMapping(
        MODEL_FEATURE_VALUES,
        "model_feature_bin_total",
        PrometheusType.COUNTER,
        "Feature values of answered rows, counted into the reference profile's bins.",
        labels={**_FEATURE_LABELS, MODEL_BIN: "bin"},
    ),
    MetricMapping(
        MODEL_FEATURE_EXPECTED_SHARE,
        "model_feature_expected_share",
        PrometheusType.GAUGE,
        "Share of the training rows in each bin of a feature (the reference profile, constant).",
        labels={**_FEATURE_LABELS, MODEL_BIN: "bin"},
    ),
    MetricMapping(
        MODEL_FEATURE_MISSING,
        "model_feature_missing_total",
        PrometheusType.COUNTER,
        "Feature values of answered rows that were missing, null or NaN.",
        labels=_FEATURE_LABELS,
    ),
    MetricMapping(
        MODEL_INPUT_ROWS,
        "model_input_rows_total",
        PrometheusType.COUNTER,
        "Rows of prediction requests sent to the model (answered or rejected by it).",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_INPUT_VIOLATIONS,
        "model_input_violation_total",
        PrometheusType.COUNTER,
        "Input values that violate the model's signature, by column and kind (missing, wrong_type, unexpected).",
        labels={**_MODEL_LABELS, MODEL_INPUT_COLUMN: "column", MODEL_VIOLATION_KIND: "kind"},
    ),
    MetricMapping(
        MODEL_INPUT_UNREADABLE,
        "model_input_unreadable_total",
        PrometheusType.COUNTER,
        "Prediction requests whose rows could not be read for the quality metrics, by input format.",
        labels={**_MODEL_LABELS, MODEL_INPUT_FORMAT: "format"},
    ),
    MetricMapping(
        MODEL_PREDICTION_VALUES,
        "model_prediction_bin_total",
        PrometheusType.COUNTER,
        "The model's answers, counted by class (classifiers) or into the reference's bins (regressors).",
        labels={**_MODEL_LABELS, MODEL_BIN: "bin"},
    ),
    MetricMapping(
        MODEL_PREDICTION_EXPECTED_SHARE,
        "model_prediction_expected_share",
        PrometheusType.GAUGE,
        "Share of each class or bin in the model's answers on the training rows (constant).",
        labels={**_MODEL_LABELS, MODEL_BIN: "bin"},
    ),
    MetricMapping(
        MODEL_FEEDBACK_LABELS,
        "model_feedback_labels_total",
        PrometheusType.COUNTER,
        "True labels received on POST /feedback and matched to their prediction.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_CORRECT,
        "model_feedback_correct_total",
        PrometheusType.COUNTER,
        "Feedback labels equal to the predicted class (classifiers).",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_ABSOLUTE_ERROR,
        "model_feedback_absolute_error",
        PrometheusType.HISTOGRAM,
        "Absolute error |prediction - label| of regressors' predictions, from feedback labels.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_SQUARED_ERROR,
        "model_feedback_squared_error_total",
        PrometheusType.COUNTER,
        "Sum of squared errors (prediction - label)^2 of regressors' predictions, from feedback labels.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_REJECTED,
        "model_feedback_rejected_total",
        PrometheusType.COUNTER,
        "Feedback requests refused, by reason (invalid_json, invalid_feedback, invalid_token, ...).",
        labels={**_MODEL_LABELS, ERROR_TYPE: "reason"},
    ),
    MetricMapping(
        INFERENCE_LOG_RECORDS,
        "inference_log_records_total",
        PrometheusType.COUNTER,
        "Inference log records written, by destination (file, otlp).",
        labels={**_MODEL_LABELS, INFERENCE_LOG_DESTINATION: "destination"},
    ),
    MetricMapping(
        INFERENCE_LOG_DROPPED,
        "inference_log_dropped_total",
        PrometheusType.COUNTER,
        "Inference log records dropped, by reason (queue_full, write_error, export_error, encode_error); "
        "the predictions were answered.",
        labels={**_MODEL_LABELS, ERROR_TYPE: "reason"},
    ),
    MetricMapping(
        MODEL_INPUT_ISSUES,
        "model_input_issue_total",
        PrometheusType.COUNTER,
        "Values of profiled features in the rows sent to the model that fail a data-quality check against "
        "the reference profile, by issue (missing, wrong_type, below_min, above_max, unseen).",
        labels={**_FEATURE_LABELS, MODEL_INPUT_ISSUE: "issue"},
    ),
    MetricMapping(
        MODEL_REFERENCE_ROWS,
        "model_reference_rows",
        PrometheusType.GAUGE,
        "Rows of the reference data the profile was built from (constant; 0 when unknown).",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_REFERENCE_PERFORMANCE,
        "model_reference_performance",
        PrometheusType.GAUGE,
        "The model's accuracy, precision, recall and F1 on the labelled reference data (constant).",
        labels={**_MODEL_LABELS, MODEL_PERFORMANCE_METRIC: "metric"},
    ),
    MetricMapping(
        MODEL_ESTIMATED_ROWS,
        "model_estimated_rows_total",
        PrometheusType.COUNTER,
        "Answered rows whose calibrated class probabilities were counted into the estimated performance.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_ESTIMATED_CORRECT,
        "model_estimated_correct_total",
        PrometheusType.COUNTER,
        "Expected right answers: the calibrated probability of each answered row's predicted class, summed.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_ESTIMATED_TRUE_POSITIVE,
        "model_estimated_true_positive_total",
        PrometheusType.COUNTER,
        "Expected true positives per class: the class's calibrated probability on the rows predicted as it.",
        labels=_CLASS_LABELS,
    ),
    MetricMapping(
        MODEL_ESTIMATED_PREDICTED,
        "model_estimated_predicted_total",
        PrometheusType.COUNTER,
        "Answered rows predicted as each class (the estimate's precision denominator).",
        labels=_CLASS_LABELS,
    ),
    MetricMapping(
        MODEL_ESTIMATED_ACTUAL,
        "model_estimated_actual_total",
        PrometheusType.COUNTER,
        "Expected rows truly of each class: the class's calibrated probability on every answered row.",
        labels=_CLASS_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_EXPECTED_CORRECT,
        "model_feedback_expected_correct_total",
        PrometheusType.COUNTER,
        "The estimate on the labelled rows: each labelled row's calibrated probability of its predicted class.",
        labels=_MODEL_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_TRUE_POSITIVE,
        "model_feedback_true_positive_total",
        PrometheusType.COUNTER,
        "Feedback labels equal to the predicted class, per class.",
        labels=_CLASS_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_PREDICTED,
        "model_feedback_predicted_total",
        PrometheusType.COUNTER,
        "Feedback labels of rows predicted as each class.",
        labels=_CLASS_LABELS,
    ),
    MetricMapping(
        MODEL_FEEDBACK_ACTUAL,
        "model_feedback_actual_total",
        PrometheusType.COUNTER,
        "Feedback labels naming each class.",
        labels=_CLASS_LABELS,
    ),
)

MAPPINGS_BY_OTEL_NAME: dict[str, tuple[MetricMapping, ...]] = {}
for _mapping in MAPPINGS:
    MAPPINGS_BY_OTEL_NAME[_mapping.otel_name] = (
        *MAPPINGS_BY_OTEL_NAME.get(_mapping.otel_name, ()),
        _mapping,
    )
