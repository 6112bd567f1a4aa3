"""Alert thresholds and the notification policy: every number the alerts use, defined once.

:data:`THRESHOLDS` holds each threshold, ``for`` duration, window, selector and SLO the alerts use,
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

from inferwatch.contract.inputs import PREDICTION_ROUTES
from inferwatch.contract.slo import SLO, SLOS


@dataclass(frozen=True)
class Thresholds:
    """Every threshold, duration and selector the alert rules use."""

    # Which inferwatch series every rule, recording rule, dashboard panel, dashboard variable and
    # alert text reads: label matchers added to each series they select (the marker included),
    # e.g. 'job="fraud-model"', or 'job=~"fraud-.*", env="prod"'. Empty, the default, narrows
    # nothing: any job name, scraped directly or through the collector. This selector narrows;
    # it is not what tells inferwatch's series from another job's same-named ones: every query
    # keeps a series only `and on (job, instance)` inferwatch's marker,
    # target_info{telemetry_distro_name="inferwatch"} (see contract.metrics.MARKER_METRIC).
    selector: str = ""
    # The labels that name one model: every prediction alert and recording rule is evaluated per
    # these (`sum by (...)`), Alertmanager and Grafana send one email per alert and these, and
    # the dashboard's panels split by them. `job` is service.name (OTEL_SERVICE_NAME) through the
    # collector, the scrape job's name when Prometheus scrapes a proxy directly; `model` and
    # `model_version` (--model-name, --model-version) are on every prediction and model-quality
    # series, so two versions of a model behind one job (a canary) are judged apart. Series
    # without them (the HTTP histogram, host gauges) group by job alone.
    model_labels: tuple[str, ...] = ("job", "model", "model_version")

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
    latency_routes: str = f'route=~"{"|".join(PREDICTION_ROUTES)}"'

    # HighPredictionFailureRate: failed share of predictions above this ...
    failure_ratio: float = 0.10
    # ... over this window ...
    failure_window: str = "5m"
    # ... for this long.
    failure_for: str = "2m"

    # InferwatchDown: a scrape target that served inferwatch's marker has not answered for this long.
    down_for: str = "1m"
    # InferwatchMetricsAbsent: a job that served inferwatch's series has none for this long
    # (the proxy gone behind the collector, the collector down), or there are none at all.
    absent_for: str = "2m"
    # InferwatchDown and InferwatchMetricsAbsent: how long a scrape target or a job stays known as
    # inferwatch's after its marker was last seen. An outage longer than this stops alerting; a
    # model removed on purpose alerts this long unless silenced. Rules read the marker over this
    # window (one series per instance), so it costs a day of 5 s samples per instance.
    remember_for: str = "1d"

    # Model quality (rules/quality.yml, docs/model-quality.md). Drift is the population stability
    # index (PSI) of the rows counted over this window (summed over every instance) against the
    # reference profile's expected shares ...
    drift_window: str = "1h"
    # ... with shares below this raised to it (an empty bin would make ln(a/e) infinite) ...
    psi_epsilon: float = 0.0001
    # ... judged only once the window holds at least this many rows per bin of the feature (or
    # answers; bins with a reference share above 0): on fewer, empty bins raised to psi_epsilon
    # dominate the statistic and the chi-square approximation below no longer holds ...
    drift_min_rows_per_bin: int = 10
    # The dashboard's "watch" line: PSI above this is a moderate shift worth a look ...
    drift_watch: float = 0.1
    # ... ModelInputDrift (any feature) and ModelPredictionDrift fire above this fixed floor
    # ("act"), and above the PSI that the window's rows would exceed by chance with this
    # probability (the critical value: chi-square with bins - 1 degrees of freedom, times
    # 1/rows + 1/reference rows; contract.profile.psi_critical_value) ...
    drift_act: float = 0.25
    drift_alpha: float = 0.01
    # ... for this long.
    drift_for: str = "15m"

    # ModelAccuracyLow: the share of feedback labels equal to the predicted class below this ...
    accuracy_floor: float = 0.7
    # ... over this window ...
    accuracy_window: str = "1h"
    # ... once at least this many labels arrived in it ...
    accuracy_min_labels: int = 100
    # ... for this long.
    accuracy_for: str = "15m"

    # ModelEstimatedPerformanceLow: a classifier's accuracy, precision, recall or F1 estimated
    # from its calibrated class probabilities over this window, every instance summed ...
    estimate_window: str = "1h"
    # ... more than this below the same metric on the labelled reference data ...
    estimate_drop: float = 0.05
    # ... once the window holds at least this many answered rows ...
    estimate_min_rows: int = 500
    # ... for this long.
    estimate_for: str = "15m"

    # Data quality against the profile (dashboard only): values of each feature missing, of the
    # wrong type, outside the reference's range or unseen, as a share of the rows sent, over this window.
    data_quality_window: str = "5m"

    # ModelInputViolations: values violating the model's signature (per column and kind), as a
    # share of the rows sent, above this ...
    violation_ratio: float = 0.05
    # ... over this window ...
    violation_window: str = "5m"
    # ... for this long (a burst, not one bad client request).
    violation_for: str = "2m"

    # GenAI models (rules/genai.yml, docs/genai.md). GenAiAnswersCutOff: the share of GenAI answer
    # choices that stopped at the token limit (finish reason "length") above this ...
    genai_cutoff_ratio: float = 0.2
    # ... over this window (also the window of the GenAI row's rates and quantiles) ...
    genai_window: str = "5m"
    # ... once the window holds at least this many choices (a few long prompts are not a trend) ...
    genai_min_choices: int = 20
    # ... for this long.
    genai_cutoff_for: str = "10m"
    # GenAiSatisfactionLow: the mean rating of a model's GenAI answers (0 thumbs down or the
    # lowest score, 1 thumbs up or the highest) below this ...
    genai_satisfaction_floor: float = 0.7
    # ... over this window ...
    genai_satisfaction_window: str = "1h"
    # ... once at least this many ratings arrived in it ...
    genai_min_ratings: int = 20
    # ... for this long.
    genai_satisfaction_for: str = "15m"

    # HighPredictionLatency's pointer to the slow traces: a Jaeger search for the alerting job's
    # traces (its service.name, as `job` is through the collector) at least latency_seconds
    # long (the collector keeps every trace that slow).
    jaeger_url: str = "http://localhost:16686"

    # The service-level objectives (contract.slo): each renders recording rules for every alert
    # window, the error budget remaining, a page and a ticket burn-rate alert
    # (PredictionAvailabilityBudgetBurn, PredictionLatencyBudgetBurn) and the dashboard's SLO row,
    # per model (model_labels), through the selector and the marker like every other rule.
    slos: tuple[SLO, ...] = SLOS


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class RouteTimings:
    """Alertmanager's grouping and repetition (the seed's notification policy)."""

    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    # Burn-rate tickets (severity="ticket") are for working hours: reminded once a day, not every 4h.
    ticket_repeat_interval: str = "1d"
