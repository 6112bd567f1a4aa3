"""Grafana as code: datasources, the "ML model service" dashboard and Grafana-managed alerting.

Grafana runs only in docker-compose, so everything it reads is a file under
``observability/grafana/``, and every file but ``grafana.ini`` is rendered here from the two
sources of truth: the alert thresholds (:data:`inferwatch.contract.thresholds.THRESHOLDS`, which
also render the Prometheus rules) and the metric contract (the names in
:mod:`inferwatch.contract.metrics`). A panel threshold, a Grafana rule threshold and a Prometheus
rule threshold are therefore one number. ``python -m inferwatch.render --check`` (and
``tests/test_grafana.py``) fail when a committed file differs from the rendering; the tests also
run every query against a real Prometheus scraping the real service. From the repository root::

    python -m inferwatch.render --check    # exit 1 and list the files that differ
    python -m inferwatch.render --write    # rewrite them after editing THRESHOLDS or this module

The files (paths inside the container in brackets, as docker-compose mounts them):

* ``provisioning/datasources/datasources.yml`` [/etc/grafana/provisioning/datasources]:
  Prometheus (uid ``prometheus``, the default; exemplar trace ids link to Jaeger), Jaeger
  (uid ``jaeger``) and Alertmanager (uid ``alertmanager``);
* ``provisioning/dashboards/dashboards.yml`` [/etc/grafana/provisioning/dashboards]: a file
  provider reading ``/etc/grafana/dashboards``;
* ``dashboards/ml-model-service.json`` [/etc/grafana/dashboards]: the dashboard;
* ``provisioning/alerting/{rules,contact-points,policies}.yml``
  [/etc/grafana/provisioning/alerting]: HighCPUUsage, HighPredictionLatency and
  HighPredictionFailureRate as Grafana-managed rules with the Prometheus rules' expressions,
  thresholds and ``for``; an email contact point; the notification policy (group by alertname and job,
  30s / 5m / 4h, the same :class:`~inferwatch.contract.thresholds.RouteTimings` as Alertmanager's).

Environment variables Grafana expands in these files at start (provisioning files only, never in
the dashboard JSON):

* ``INFERWATCH_ALERT_EMAIL_TO``: the contact point's recipients, comma-separated, e.g.
  ``oncall@example.com,team@example.com`` (the same variable Alertmanager's rendering reads).

``observability/grafana/grafana.ini`` is written by hand; it reads the admin password and the
SMTP settings from the environment (see ``observability/grafana/README-dashboards.md``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inferwatch.contract.slo import BURN_RATE_WINDOWS, PAGE, SLO
from inferwatch.contract.thresholds import THRESHOLDS, RouteTimings, Thresholds
from inferwatch.render import promql, slo_rules
from inferwatch.render.alertmanager import group_by
from inferwatch.render.prometheus_rules import (
    AlertRule,
    QualityRecords,
    cpu_expr,
    failure_ratio_expr,
    jaeger_slow_traces_url,
    latency_quantile_expr,
    recording_group,
    rule_groups,
)
from inferwatch.render.text import number, percent, to_yaml

GRAFANA_DIR = Path("observability/grafana")
PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
DATASOURCES_FILE = PROVISIONING_DIR / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS_FILE = PROVISIONING_DIR / "dashboards" / "dashboards.yml"
ALERT_RULES_FILE = PROVISIONING_DIR / "alerting" / "rules.yml"
CONTACT_POINTS_FILE = PROVISIONING_DIR / "alerting" / "contact-points.yml"
POLICIES_FILE = PROVISIONING_DIR / "alerting" / "policies.yml"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "ml-model-service.json"

# Where docker-compose mounts the repository's folders inside the Grafana container.
CONTAINER_PROVISIONING_DIR = "/etc/grafana/provisioning"
CONTAINER_DASHBOARDS_DIR = "/etc/grafana/dashboards"
CONTAINER_CONFIG_FILE = "/etc/grafana/grafana.ini"

# Prometheus's scrape interval (observability/prometheus/prometheus.yml): the smallest step
# Grafana asks for, and the base of $__rate_interval.
SCRAPE_INTERVAL = "5s"

ALERT_EMAIL_VARIABLE = "INFERWATCH_ALERT_EMAIL_TO"
CONTACT_POINT = "inferwatch-email"
ALERT_FOLDER = "inferwatch"
# Grafana schedules rules in 10 s steps, so Prometheus's 15 s is not available; 30 s divides
# every `for` in THRESHOLDS.
ALERT_EVALUATION_INTERVAL = "30s"
ALERT_QUERY_LOOKBACK_SECONDS = 600

DASHBOARD_UID = "inferwatch-ml-model-service"
DASHBOARD_TITLE = "ML model service"
# The dashboard's time range in microseconds (Jaeger's unit), for links: Grafana's ${__from} and
# ${__to} are milliseconds.
GRAFANA_FROM_US = "${__from}000"
GRAFANA_TO_US = "${__to}000"
# Grafana's own variables, as the panel queries spell them.
JOB = "$job"
JOB_CHOSEN = f'job=~"{JOB}"'
INSTANCE = "$instance"
ROUTE = "$route"
RATE_INTERVAL = "$__rate_interval"
TIME_RANGE = "$__range"
CPU_PANEL = "CPU usage"


@dataclass(frozen=True)
class Datasource:
    uid: str
    name: str
    type: str
    url: str

    @property
    def ref(self) -> dict:
        """How a panel, variable or rule query names this datasource."""
        return {"type": self.type, "uid": self.uid}


# URLs are docker-compose service names and container ports.
PROMETHEUS = Datasource("prometheus", "Prometheus", "prometheus", "http://prometheus:9090")
JAEGER = Datasource("jaeger", "Jaeger", "jaeger", "http://jaeger:16686")
ALERTMANAGER = Datasource("alertmanager", "Alertmanager", "alertmanager", "http://alertmanager:9093")
# Server-side expressions (reduce, threshold) in Grafana rules: a built-in pseudo datasource.
EXPRESSIONS = Datasource("__expr__", "Expression", "__expr__", "")

# The OpenTelemetry Collector's Prometheus exporter names an exemplar's trace id label so.
EXEMPLAR_TRACE_ID_LABEL = "trace_id"


def _header(what: str) -> str:
    return (
        f"# {what}\n"
        "# Generated by `python -m inferwatch.render --write` from service/inferwatch/render/grafana.py\n"
        "# and THRESHOLDS in service/inferwatch/contract/thresholds.py: do not edit by hand\n"
        "# (`python -m inferwatch.render --check` fails when this file differs from the rendering).\n"
    )


def _yaml(what: str, body: dict) -> str:
    return _header(what) + "\n".join(to_yaml(body)) + "\n"


# ---------------------------------------------------------------------------------------------
# Datasources and the dashboard provider
# ---------------------------------------------------------------------------------------------


def datasources() -> dict:
    return {
        "apiVersion": 1,
        # Provisioned datasources removed from this file are removed from Grafana too.
        "prune": True,
        "datasources": [
            {
                "name": PROMETHEUS.name, "type": PROMETHEUS.type, "uid": PROMETHEUS.uid,
                "access": "proxy", "url": PROMETHEUS.url, "isDefault": True, "editable": False,
                "jsonData": {
                    "httpMethod": "POST",
                    "timeInterval": SCRAPE_INTERVAL,
                    "prometheusType": "Prometheus",
                    # Shows the Prometheus rules (the tested default) in Grafana's alerting UI.
                    "manageAlerts": True,
                    "alertmanagerUid": ALERTMANAGER.uid,
                    "exemplarTraceIdDestinations": [
                        {"name": EXEMPLAR_TRACE_ID_LABEL, "datasourceUid": JAEGER.uid},
                    ],
                },
            },
            {
                "name": JAEGER.name, "type": JAEGER.type, "uid": JAEGER.uid,
                "access": "proxy", "url": JAEGER.url, "editable": False,
            },
            {
                "name": ALERTMANAGER.name, "type": ALERTMANAGER.type, "uid": ALERTMANAGER.uid,
                "access": "proxy", "url": ALERTMANAGER.url, "editable": False,
                "jsonData": {
                    "implementation": "prometheus",
                    # Grafana-managed alerts go through Grafana's own Alertmanager and contact point.
                    "handleGrafanaManagedAlerts": False,
                },
            },
        ],
    }


def dashboard_providers() -> dict:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "inferwatch",
            "orgId": 1,
            "type": "file",
            "disableDeletion": True,
            # The repository is the source: a change made in the UI could not be saved back.
            "allowUiUpdates": False,
            "updateIntervalSeconds": 30,
            "options": {"path": CONTAINER_DASHBOARDS_DIR, "foldersFromFilesStructure": False},
        }],
    }


# ---------------------------------------------------------------------------------------------
# The alerts, as Grafana evaluates them: the Prometheus rule's expression split into the query
# and the threshold it is compared with.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertCondition:
    """One alert as Grafana evaluates it: the Prometheus rule's expression split at its comparison."""

    alert: str
    query: str  # PromQL; the alert fires while a series of it is above threshold for for_
    threshold: float
    for_: str
    unit: str  # Grafana unit of query's values
    description: str  # Grafana annotation template; $values.B is the reduced query value


def alert_conditions(t: Thresholds = THRESHOLDS) -> tuple[AlertCondition, ...]:
    latency = number(t.latency_seconds)
    q = "p" + percent(t.latency_quantile)
    return (
        AlertCondition(
            "HighCPUUsage", cpu_expr(t), t.cpu_percent, t.cpu_for, "percent",
            f"CPU usage is {{{{ humanize $values.B.Value }}}}% on {{{{ $labels.instance }}}} "
            f"(job {{{{ $labels.job }}}}, threshold: {number(t.cpu_percent)}%).",
        ),
        AlertCondition(
            "HighPredictionLatency", latency_quantile_expr(t), t.latency_seconds, t.latency_for, "s",
            f"{q} latency of predictions ({{{{ $labels.job }}}}) is {{{{ humanizeDuration $values.B.Value }}}} "
            f"over the last {t.latency_window} (threshold: {latency}s). "
            f"Slow traces: {jaeger_slow_traces_url(t, '{{ $labels.job }}')}",
        ),
        AlertCondition(
            "HighPredictionFailureRate", failure_ratio_expr(t), t.failure_ratio, t.failure_for, "percentunit",
            f"{{{{ humanizePercentage $values.B.Value }}}} of predictions ({{{{ $labels.job }}}}) failed over "
            f"the last {t.failure_window} (threshold: {percent(t.failure_ratio)}%). "
            "prediction_failure_by_reason_total says why.",
        ),
    )


def _prometheus_alert(name: str, t: Thresholds) -> AlertRule:
    return next(rule for group in rule_groups(t) for rule in group.rules
                if isinstance(rule, AlertRule) and rule.alert == name)


def _recorded(expr: str, t: Thresholds) -> str:
    """The recording rule that records exactly ``expr`` (what an alert evaluates), as a query of
    the models chosen on the dashboard (the rule keeps inferwatch's series only already)."""
    record = next(rule.record for rule in recording_group(t).rules if rule.expr == expr)
    return promql.series(t, record, JOB_CHOSEN)


# ---------------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------------


def _chosen(*extra: str) -> tuple[str, ...]:
    """Matchers for the models and instances chosen on the dashboard, and ``extra``."""
    return (JOB_CHOSEN, f'instance=~"{INSTANCE}"', *extra)


def _http(*extra: str) -> tuple[str, ...]:
    """Like :func:`_chosen`, for the HTTP metrics, which also carry the route."""
    return _chosen(f'route=~"{ROUTE}"', *extra)


def _gauge(t: Thresholds, metric: str, *by: str) -> str:
    """An inferwatch gauge of the chosen instances, summed by model and ``by``."""
    chosen = promql.of_inferwatch(t, promql.series(t, metric, *_chosen()))
    return f"sum {promql.by(t, *by)} ({chosen})"


def _sum_rate(t: Thresholds, metric: str, matchers: tuple[str, ...], *by: str) -> str:
    return f"sum {promql.by(t, *by)} ({promql.rate(t, metric, RATE_INTERVAL, *matchers)})"


def _legend(t: Thresholds, *labels: str) -> str:
    """``{{job}} {{route}}``: the model labels first, so every line says which model it is."""
    return " ".join("{{" + label + "}}" for label in (*t.model_labels, *labels))


def _target(expr: str, legend: str, ref: str = "A", **extra) -> dict:
    return {"refId": ref, "datasource": PROMETHEUS.ref, "editorMode": "code", "expr": expr,
            "legendFormat": legend, "range": True, **extra}


def _thresholds(*steps: tuple[str, float | None]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


NO_THRESHOLD = _thresholds(("green", None))


def _above(value: float) -> dict:
    """Red from ``value`` up. Grafana colours a value equal to a step with that step; the alerts
    fire strictly above, so a panel turns red at the threshold itself, one tick early."""
    return _thresholds(("green", None), ("red", value))


def _below(value: float) -> dict:
    return _thresholds(("red", None), ("green", value))


def _timeseries(title: str, description: str, unit: str, targets: list[dict], *,
                thresholds: dict = NO_THRESHOLD, minimum: float | None = 0, maximum: float | None = None,
                width: int = 12, data_links: Iterable[dict] = ()) -> dict:
    defaults = {
        "unit": unit,
        "thresholds": thresholds,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False,
            # Draw the alert threshold as a line; panels without one draw nothing.
            "thresholdsStyle": {"mode": "off" if thresholds is NO_THRESHOLD else "line"},
        },
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if data_links:
        defaults["links"] = list(data_links)
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": PROMETHEUS.ref,
        "gridPos": {"h": 8, "w": width},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": targets,
    }


def _stat(title: str, description: str, unit: str, target: dict, *, thresholds: dict = NO_THRESHOLD,
          decimals: int | None = None) -> dict:
    defaults = {"unit": unit, "thresholds": thresholds, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat", "title": title, "description": description, "datasource": PROMETHEUS.ref,
        "gridPos": {"h": 5, "w": 6},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background" if thresholds is not NO_THRESHOLD else "none",
                    "graphMode": "area", "justifyMode": "auto", "orientation": "auto", "textMode": "auto"},
        "targets": [target],
    }


def _row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"h": 1, "w": 24}}


def _at_a_glance(t: Thresholds) -> list[dict]:
    conditions = {c.alert: c for c in alert_conditions(t)}
    latency, failure = conditions["HighPredictionLatency"], conditions["HighPredictionFailureRate"]
    q = "p" + percent(t.latency_quantile)
    return [
        _row("At a glance"),
        _stat(
            "Instances reporting",
            "Does every model report? The number of inferwatch instances per model whose metrics "
            "Prometheus has now (each proxy scraped directly, or each service behind the collector). "
            "A model missing here is what InferwatchMetricsAbsent fires on, a target that does not "
            "answer what InferwatchDown fires on.",
            "none", _target(f"count {promql.by(t)} ({promql.marker(t, JOB_CHOSEN)})",
                            _legend(t)),
            thresholds=_below(1), decimals=0),
        _stat(
            f"{q} latency, {t.latency_window} (alert view)",
            f"Would HighPredictionLatency fire? The {q} of prediction latency over "
            f"{t.latency_window} per model, every instance summed: the alert's own expression (recording "
            f"rule). Red from {number(latency.threshold)} s; the alert fires above it for {latency.for_}. "
            "Ignores the instance and route selectors, as the alert does.",
            latency.unit, _target(_recorded(latency.query, t), _legend(t)), thresholds=_above(latency.threshold)),
        _stat(
            f"Failure ratio, {t.failure_window} (alert view)",
            f"Would HighPredictionFailureRate fire? The failed share of predictions over "
            f"{t.failure_window} per model, every instance summed: the alert's own expression (recording "
            f"rule). Red from {percent(failure.threshold)}%; the alert fires above it for {failure.for_}. "
            "Empty while there are no predictions (0/0).",
            failure.unit, _target(_recorded(failure.query, t), _legend(t)), thresholds=_above(failure.threshold)),
        _stat(
            "Failed predictions in range",
            "How many predictions failed in the selected time range, per model? Every reason counted "
            "(bad input, model error, MLflow down or too slow); 'Failures by reason' says which.",
            "short",
            _target(f"sum {promql.by(t)} ({promql.of_inferwatch(t, _increase(t, 'prediction_failure_total'))})",
                    _legend(t)),
            decimals=0),
    ]


def _increase(t: Thresholds, metric: str) -> str:
    return f"increase({promql.series(t, metric, *_chosen())}[{TIME_RANGE}])"


def _requests(t: Thresholds) -> list[dict]:
    errors = _http('status=~"4..|5.."')
    return [
        _row("Requests"),
        _timeseries(
            "Request rate by route",
            "How much traffic does each route get? HTTP requests per second that the service "
            "answered (any status), from http_requests_total, per model and route.",
            "reqps", [_target(_sum_rate(t, "http_requests_total", _http(), "route"), _legend(t, "route"))]),
        _timeseries(
            "Throughput reported by the service",
            "What request rate does each instance measure itself? http_requests_throughput, the "
            "seed's gauge: requests per second over the service's last host-sampling interval. "
            "Should follow 'Request rate by route'.",
            "reqps", [_target(_gauge(t, "http_requests_throughput", "instance"), _legend(t, "instance"))]),
        _timeseries(
            "Errors by status",
            "Which errors does the service return, and where? 4xx and 5xx answers per second by "
            "model, route and status (400 bad input, 404 unknown path, 503 MLflow down, 504 MLflow too "
            "slow, 502 MLflow error).",
            "reqps", [_target(_sum_rate(t, "http_requests_total", errors, "route", "status"),
                              _legend(t, "status", "route"))]),
        _timeseries(
            "Active requests",
            "How many requests are in flight right now? A count that keeps rising means requests "
            "are waiting on MLflow.",
            "short", [_target(_gauge(t, "active_requests", "instance"), _legend(t, "instance"))]),
    ]


def _latency(t: Thresholds) -> list[dict]:
    quantiles = sorted({0.5, t.latency_quantile, 0.99})
    buckets = _sum_rate(t, "http_request_duration_seconds_bucket", _http(), "le")
    targets = [
        _target(f"histogram_quantile({number(q)}, {buckets})", _legend(t) + " p" + percent(q),
                ref=chr(ord("A") + i), exemplar=True)
        for i, q in enumerate(quantiles)
    ]
    latency = number(t.latency_seconds)
    q = "p" + percent(t.latency_quantile)
    # A data link: clicking a model's line opens that model's slow traces of the dashboard's time
    # range (job is service.name through the collector, the path traces take).
    slow_traces = [{"title": f"Traces slower than {latency} s in this time range (Jaeger)",
                    "url": jaeger_slow_traces_url(t, "${__field.labels.job}", GRAFANA_FROM_US, GRAFANA_TO_US),
                    "targetBlank": True}]
    request = f"histogram_quantile({number(t.latency_quantile)}, " \
              f"{_sum_rate(t, 'http_request_duration_seconds_bucket', _chosen(t.latency_routes), 'le')})"
    model = f"histogram_quantile({number(t.latency_quantile)}, " \
            f"{_sum_rate(t, 'upstream_request_duration_seconds_bucket', _chosen(), 'le')})"
    return [
        _row("Latency"),
        _timeseries(
            "Request latency p50 / p95 / p99",
            f"How long do requests take? Latency quantiles of the selected routes per model, every "
            f"instance summed. The line is HighPredictionLatency's threshold, {latency} s (a bucket edge); "
            f"the alert watches the {q} of /predict and /invocations over {t.latency_window}. The dots "
            "are exemplars: a slow, failed or sampled request each, whose trace opens in Jaeger "
            f"(click a line: that model's traces slower than {latency} s in the time range).",
            "s", targets, thresholds=_above(t.latency_seconds), width=12, data_links=slow_traces),
        _timeseries(
            f"Model time vs proxy time ({q})",
            f"How much of a prediction is the model? Per model, the {q} of the whole request (/predict "
            f"and /invocations), the {q} of the MLflow call alone (upstream_request_duration_seconds: "
            "model time) and their difference (proxy time: validation, forwarding, telemetry). "
            "When the request line rises with the model line, MLflow is slow; when they part, the "
            "proxy is. The dots are exemplars of the MLflow call.",
            "s", [
                _target(request, f"{_legend(t)} request {q}"),
                _target(model, f"{_legend(t)} model (MLflow call) {q}", ref="B", exemplar=True),
                _target(f"{request}\n-\n{model}", f"{_legend(t)} proxy (difference) {q}", ref="C"),
            ], thresholds=_above(t.latency_seconds), width=12, data_links=slow_traces),
    ]


def _predictions(t: Thresholds) -> list[dict]:
    success = _sum_rate(t, "prediction_success_total", _chosen())
    failure = _sum_rate(t, "prediction_failure_total", _chosen())
    # Success below this is failure above HighPredictionFailureRate's threshold.
    healthy_success = round(1 - t.failure_ratio, 9)
    return [
        _row("Predictions"),
        _timeseries(
            "Prediction success rate",
            f"What share of predictions does each model answer? Successes over all predictions. "
            f"The line is {percent(healthy_success)}%: below it the failure ratio is above "
            f"HighPredictionFailureRate's {percent(t.failure_ratio)}%. Empty while there are no "
            "predictions.",
            "percentunit", [_target(f"{success}\n/\n({success} + {failure})", _legend(t))],
            thresholds=_below(healthy_success), maximum=1, width=8),
        _timeseries(
            "Predictions answered and failed",
            "How many predictions per second succeed and fail? prediction_success_total and "
            "prediction_failure_total per model, every instance summed.",
            "reqps", [_target(success, _legend(t) + " answered"), _target(failure, _legend(t) + " failed", ref="B")],
            width=8),
        _timeseries(
            "Failures by reason",
            "Why do predictions fail? Failed predictions per second by model and reason: invalid_json, "
            "invalid_input, unsupported_media_type, payload_too_large, model_rejected, "
            "upstream_unavailable, upstream_timeout, upstream_error.",
            "reqps", [_target(_sum_rate(t, "prediction_failure_by_reason_total", _chosen(), "reason"),
                              _legend(t, "reason"))],
            width=8),
    ]


def _host(t: Thresholds) -> list[dict]:
    cpu = number(t.cpu_percent)
    return [
        _row("Host"),
        _timeseries(
            CPU_PANEL,
            f"Is the host's CPU saturated? CPU used in percent, per instance. The line is "
            f"HighCPUUsage's threshold, {cpu}%; the alert fires above it for {t.cpu_for}.",
            "percent", [_target(_gauge(t, "system_cpu_usage", "instance"), _legend(t, "instance"))],
            thresholds=_above(t.cpu_percent), maximum=100, width=6),
        _timeseries(
            "Memory used",
            "Is the host running out of memory? Memory used in percent of the total, per instance.",
            "percent", [_target(_gauge(t, "system_ram_usage", "instance"), _legend(t, "instance"))],
            maximum=100, width=6),
        _timeseries(
            "Memory used (MiB)",
            "How much memory does the host use? Memory used in MiB, per instance.",
            "mbytes", [_target(_gauge(t, "system_memory_usage_mb", "instance"), _legend(t, "instance"))],
            width=6),
        _timeseries(
            "Disk used",
            "Is the disk filling up? Space used in percent at the path the service watches "
            "(--disk-path), per instance and mount point.",
            "percent",
            [_target(_gauge(t, "system_disk_usage", "instance", "mountpoint"), _legend(t, "instance", "mountpoint"))],
            maximum=100, width=6),
    ]


def _sum_increase(t: Thresholds, metric: str, window: str, *by: str) -> str:
    """An inferwatch counter's increase over ``window`` for the chosen instances, per model and ``by``."""
    return f"sum {promql.by(t, *by)} ({promql.increase(t, metric, window, *_chosen())})"


def _quality(t: Thresholds) -> list[dict]:
    r = QualityRecords(t)

    def recorded(name: str) -> str:
        """A quality recording rule's series of the chosen models (already inferwatch's only)."""
        return promql.series(t, name, JOB_CHOSEN)

    def expected(metric: str, *by: str) -> str:
        return f"max {promql.by(t, *by, 'bin')} ({promql.gauge(t, metric, JOB_CHOSEN)})"

    drift = _thresholds(("green", None), ("yellow", t.drift_watch), ("red", t.drift_act))
    w = t.drift_window
    answers = _sum_increase(t, "model_prediction_bin_total", w)
    return [
        _row("Model quality"),
        _timeseries(
            "Input drift (PSI) by feature",
            f"Do the inputs still look like the training data? The population stability index of each "
            f"feature over the last {w}, every instance's rows summed, against the reference profile. "
            f"Yellow from {number(t.drift_watch)} (worth a look), red from {number(t.drift_act)}: "
            f"ModelInputDrift fires above it for {t.drift_for} once {t.drift_min_rows} rows are counted.",
            "short", [_target(recorded(r.feature_psi), _legend(t, "feature"))],
            thresholds=drift),
        _timeseries(
            "Largest bin shift by feature",
            f"Which feature moved, and how much? The largest difference, over a feature's bins, between "
            f"its share of the rows of the last {w} and its share in training (0.2: a fifth of the rows "
            "moved into or out of one bin).",
            "percentunit", [_target(
                f"max {promql.by(t, 'feature')} (abs(\n  {recorded(r.feature_share)}\n"
                f"  - {promql.on(t, 'feature', 'bin')}\n  {expected('model_feature_expected_share', 'feature')}\n))",
                _legend(t, "feature"))], maximum=1),
        _timeseries(
            "Prediction drift (PSI)",
            f"Does the model still answer as it did on the training data? PSI of its answers (classes or "
            f"bins) over the last {w} against the reference. ModelPredictionDrift fires above "
            f"{number(t.drift_act)} for {t.drift_for}.",
            "short", [_target(recorded(r.prediction_psi), _legend(t))],
            thresholds=drift, width=8),
        _timeseries(
            "Prediction shares against the reference",
            f"What does the model predict? Each class's (or bin's) share of the answers of the last {w}, "
            "and its share on the training data (the 'reference' lines).",
            "percentunit", [
                _target(f"{_sum_increase(t, 'model_prediction_bin_total', w, 'bin')}\n"
                        f"/ ignoring(bin) group_left()\n({answers} > 0)", _legend(t, "bin")),
                _target(expected("model_prediction_expected_share"), _legend(t, "bin") + " reference", ref="B"),
            ], maximum=1, width=8),
        _timeseries(
            "Missing values by feature",
            "Which features arrive empty? The share of each feature's values that were null, NaN or "
            "absent, among the rows the model answered.",
            "percentunit", [_target(
                f"{_sum_rate(t, 'model_feature_missing_total', _chosen(), 'feature')}\n/\n"
                f"({_sum_rate(t, 'model_feature_missing_total', _chosen(), 'feature')}\n"
                f" + {_sum_rate(t, 'model_feature_bin_total', _chosen(), 'feature')})",
                _legend(t, "feature"))], maximum=1, width=8),
        _timeseries(
            "Signature violations and unreadable bodies",
            "Do clients send what the model's signature expects? Values per second that violate it, by "
            "column and kind (missing, wrong_type; unexpected columns all count as __other__), and "
            f"bodies whose rows could not be read. ModelInputViolations fires when one column and kind "
            f"exceeds {percent(t.violation_ratio)}% of the rows for {t.violation_for}.",
            "cps", [
                _target(_sum_rate(t, "model_input_violation_total", _chosen(), "column", "kind"),
                        _legend(t, "column", "kind")),
                _target(_sum_rate(t, "model_input_unreadable_total", _chosen(), "format"),
                        _legend(t) + " unreadable {{format}}", ref="B"),
                _target(_sum_rate(t, "model_input_rows_total", _chosen()), _legend(t) + " rows sent", ref="C"),
            ], width=8),
        _timeseries(
            "Online accuracy",
            f"Is the model still right? The share of feedback labels equal to the predicted class over "
            f"the last {t.accuracy_window}. The line is ModelAccuracyLow's floor, "
            f"{percent(t.accuracy_floor)}% (judged once {t.accuracy_min_labels} labels arrived).",
            "percentunit", [_target(
                f"{_sum_increase(t, 'model_feedback_correct_total', t.accuracy_window)}\n/\n"
                f"({_sum_increase(t, 'model_feedback_labels_total', t.accuracy_window)} > 0)", _legend(t))],
            thresholds=_below(t.accuracy_floor), maximum=1, width=8),
        _timeseries(
            "Feedback labels and refusals",
            "Is ground truth arriving? Labels per second matched to their prediction, and feedback "
            "requests refused per second by reason (unknown_prediction, token_expired, invalid_label, ...).",
            "cps", [
                _target(_sum_rate(t, "model_feedback_labels_total", _chosen()), _legend(t) + " labels"),
                _target(_sum_rate(t, "model_feedback_rejected_total", _chosen(), "reason"),
                        _legend(t) + " refused {{reason}}", ref="B"),
            ], width=8),
        _timeseries(
            "Regression error from feedback",
            "How far off is a regressor? Mean absolute error, root mean squared error and the 90th "
            "percentile of the absolute error of the predictions that got a label, per model version.",
            "short", [
                _target(f"{_sum_rate(t, 'model_feedback_absolute_error_sum', _chosen())}\n/\n"
                        f"{_sum_rate(t, 'model_feedback_absolute_error_count', _chosen())}", _legend(t) + " MAE"),
                _target(f"sqrt(\n  {_sum_rate(t, 'model_feedback_squared_error_total', _chosen())}\n  /\n"
                        f"  {_sum_rate(t, 'model_feedback_absolute_error_count', _chosen())}\n)",
                        _legend(t) + " RMSE", ref="B"),
                _target(f"histogram_quantile(0.9, {_sum_rate(t, 'model_feedback_absolute_error_bucket', _chosen(), 'le')})",
                        _legend(t) + " p90", ref="C"),
            ], width=8),
        _timeseries(
            "Predictions by model version",
            "Which model versions answer, and how much (a canary beside the stable version)? "
            "Predictions answered per second by model and version.",
            "reqps", [_target(_sum_rate(t, "prediction_success_total", _chosen()), _legend(t))],
            width=8),
        _stat(
            "Models loaded",
            "Which model does each proxy front, and did it load a signature and a reference profile? "
            "Instances per model, version and flavor.",
            "short", _target(_gauge(t, "model_info", "flavor", "signature", "reference"),
                             _legend(t) + " {{flavor}} signature={{signature}} reference={{reference}}"),
            decimals=0),
    ]


def _slo_series(record: str, slo: SLO | None = None) -> str:
    """A recorded SLO series of the chosen models. Recorded series hold inferwatch's selected
    series only, per model, without the selector's other labels: only the models are chosen."""
    matchers = ", ".join(([f'slo="{slo.name}"'] if slo else []) + [JOB_CHOSEN])
    return f"{record}{{{matchers}}}"


def _slo_sli(t: Thresholds, slo: SLO) -> dict:
    period = slo.period
    targets = [
        _target(f"1 - {_slo_series(slo_rules.error_ratio(window), slo)}", _legend(t) + f" over {window}",
                ref=ref)
        for ref, window in (("A", slo_rules.RATE_WINDOW), ("B", "1h"), ("C", period))
    ]
    return _timeseries(
        f"{slo.name.capitalize()} SLI against the objective",
        f"Does each model meet its {slo.name} SLO? The share of good events over {slo_rules.RATE_WINDOW}, 1h "
        f"and the {period} period so far, per model. The line is the objective: {slo_rules.objective_text(slo)}; "
        "below it the error budget burns faster than the period allows. Empty without valid events (0/0).",
        "percentunit", targets, thresholds=_below(slo.objective), minimum=None, maximum=1, width=6)


def _slo_budget(t: Thresholds) -> dict:
    return _timeseries(
        "Error budget remaining",
        f"How much of each SLO's error budget is left over its period? 1 - (bad share over the period) / "
        f"(1 - objective), per model and SLO: 100% untouched, 0% spent, below 0 overspent. Read from "
        f"{slo_rules.BUDGET_REMAINING}, which sums the 5m rates the rules recorded over the period, so it "
        "counts only what Prometheus kept (see the retention in docs/slo.md).",
        "percentunit", [_target(_slo_series(slo_rules.BUDGET_REMAINING), _legend(t, "slo"))],
        thresholds=_below(0), minimum=None, maximum=1, width=6)


def _slo_burn_rate(t: Thresholds) -> dict:
    period = t.slos[0].period  # the factors below are those of the first SLO's period

    def fires_at(severity: str) -> str:
        return " or ".join(f"{number(w.factor(period))}x over {w.long}" for w in BURN_RATE_WINDOWS
                           if w.severity == severity)

    page = [w for w in BURN_RATE_WINDOWS if w.severity == PAGE]
    shown = [(slo, w.long) for slo in t.slos for w in page]
    targets = [
        _target(f"{_slo_series(slo_rules.error_ratio(window), slo)} / {number(slo.error_budget)}",
                _legend(t) + f" {slo.name} {window}", ref=chr(ord("A") + i))
        for i, (slo, window) in enumerate(shown)
    ]
    fastest = page[0].factor(period)
    return _timeseries(
        "Error budget burn rate",
        f"How fast does each SLO spend its error budget? The bad share over {' and '.join(w.long for w in page)} "
        f"divided by the budget (1 - objective), per model and SLO: 1x spends the budget exactly in {period}. "
        f"The page fires at {fires_at(PAGE)} (red from {number(fastest)}x), the ticket at {fires_at('ticket')} "
        "(orange from 1x), each once its short window agrees.",
        "suffix:x", targets, thresholds=_thresholds(("green", None), ("orange", 1), ("red", fastest)), width=6)


def _slos(t: Thresholds) -> list[dict]:
    if not t.slos:
        return []
    return [_row("Service-level objectives"), *(_slo_sli(t, slo) for slo in t.slos), _slo_budget(t), _slo_burn_rate(t)]


def _layout(panels: list[dict]) -> list[dict]:
    """Number the panels and place them left to right, a new line when one does not fit."""
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > 24:
            x, y, line_height = 0, y + line_height, 0
        panel["id"] = panel_id
        grid.update(x=x, y=y)
        x += grid["w"]
        line_height = max(line_height, grid["h"])
        if panel["type"] == "row":
            x, y, line_height = 0, y + grid["h"], 0
    return panels


def _query_variable(name: str, label: str, query: str, description: str) -> dict:
    return {
        "type": "query", "name": name, "label": label, "description": description,
        "datasource": PROMETHEUS.ref,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change: a new instance shows up without a reload
        # No custom "All" value: Grafana then sends every listed value as (a|b|c), so "All" stays
        # the listed models, where ".*" would match every other job's same-named series too.
        "includeAll": True, "multi": True, "allValue": None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "regex": "", "sort": 1, "hide": 0,
    }


def dashboard(t: Thresholds = THRESHOLDS) -> dict:
    panels = _layout([*_at_a_glance(t), *_requests(t), *_latency(t), *_predictions(t), *_quality(t), *_slos(t),
                      *_host(t)])
    return {
        "uid": DASHBOARD_UID,
        "title": DASHBOARD_TITLE,
        "description": "inferwatch: the MLflow model proxy's requests, latency, predictions and host. "
                       "Generated by python -m inferwatch.render --write from service/inferwatch/render/grafana.py; edit that module, not this file.",
        "tags": ["inferwatch", "mlflow"],
        "editable": False,
        "graphTooltip": 1,  # shared crosshair
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": [
            # The marker exists from start-up, before any request, and only for inferwatch.
            _query_variable("job", "Model (job)", f"label_values({promql.marker(t)}, job)",
                            "Models: the job label of inferwatch's series (service.name, i.e. "
                            "OTEL_SERVICE_NAME, through the collector; the scrape job's name when "
                            "Prometheus scrapes the proxies directly)."),
            _query_variable("instance", "Instance",
                            f'label_values({promql.marker(t, JOB_CHOSEN)}, instance)',
                            "Service instances of the chosen models (the instance label: "
                            "service.instance.id, host name and port by default, through the "
                            "collector; host:port of the target when scraped directly)."),
            _query_variable("route", "Route",
                            f"label_values({promql.series(t, 'http_requests_total', *_chosen())}, route)",
                            "Route templates (/predict, /invocations; unknown paths are 'unmatched')."),
        ]},
        "panels": panels,
    }


def panel_titled(board: dict, title: str) -> dict:
    return next(panel for panel in board["panels"] if panel["title"] == title)


# ---------------------------------------------------------------------------------------------
# Grafana-managed alerting
# ---------------------------------------------------------------------------------------------

def alert_panel_title(alert: str, t: Thresholds = THRESHOLDS) -> str:
    """The panel a Grafana rule links to: the one that shows what the rule evaluates."""
    return {
        "HighCPUUsage": CPU_PANEL,
        "HighPredictionLatency": f"p{percent(t.latency_quantile)} latency, {t.latency_window} (alert view)",
        "HighPredictionFailureRate": f"Failure ratio, {t.failure_window} (alert view)",
    }[alert]


def _rule_uid(alert: str) -> str:
    """HighCPUUsage -> inferwatch-high-cpu-usage (Grafana uids: at most 40 characters)."""
    return "inferwatch-" + re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", alert).lower()


def _grafana_rule(condition: AlertCondition, board: dict, t: Thresholds) -> dict:
    prometheus_rule = _prometheus_alert(condition.alert, t)
    expression = EXPRESSIONS.ref
    return {
        "uid": _rule_uid(condition.alert),
        "title": condition.alert,  # becomes the alertname label, as in Prometheus
        "condition": "C",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": ALERT_QUERY_LOOKBACK_SECONDS, "to": 0},
             "datasourceUid": PROMETHEUS.uid,
             "model": {"refId": "A", "datasource": PROMETHEUS.ref, "expr": condition.query,
                       "instant": True, "range": False, "intervalMs": 1000, "maxDataPoints": 43200}},
            {"refId": "B", "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPRESSIONS.uid,
             "model": {"refId": "B", "datasource": expression, "type": "reduce", "expression": "A",
                       "reducer": "last"}},
            {"refId": "C", "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPRESSIONS.uid,
             "model": {"refId": "C", "datasource": expression, "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": "gt", "params": [condition.threshold]}}]}},
        ],
        # No traffic is not an outage (the ratio and the quantile are NaN or absent), exactly as
        # with the Prometheus rules; a broken query is an error, never silence.
        "noDataState": "OK",
        "execErrState": "Error",
        "for": condition.for_,
        "dashboardUid": DASHBOARD_UID,
        "panelId": panel_titled(board, alert_panel_title(condition.alert, t))["id"],
        "labels": dict(prometheus_rule.labels),
        "annotations": {
            "summary": prometheus_rule.annotations["summary"],
            "description": condition.description,
        },
        "isPaused": False,
    }


def alert_rules(t: Thresholds = THRESHOLDS) -> dict:
    board = dashboard(t)
    return {
        "apiVersion": 1,
        "groups": [{
            "orgId": 1,
            "name": "inferwatch",
            "folder": ALERT_FOLDER,
            "interval": ALERT_EVALUATION_INTERVAL,
            "rules": [_grafana_rule(condition, board, t) for condition in alert_conditions(t)],
        }],
    }


def contact_points() -> dict:
    return {
        "apiVersion": 1,
        "contactPoints": [{
            "orgId": 1,
            "name": CONTACT_POINT,
            "receivers": [{
                "uid": CONTACT_POINT,
                "type": "email",
                # Grafana expands the variable at start; commas separate addresses.
                "settings": {"addresses": f"${{{ALERT_EMAIL_VARIABLE}}}", "singleEmail": False},
                "disableResolveMessage": False,
            }],
        }],
    }


def policies(timings: RouteTimings = RouteTimings()) -> dict:
    return {
        "apiVersion": 1,
        "policies": [{
            "orgId": 1,
            "receiver": CONTACT_POINT,
            "group_by": group_by(),
            "group_wait": timings.group_wait,
            "group_interval": timings.group_interval,
            "repeat_interval": timings.repeat_interval,
        }],
    }


# ---------------------------------------------------------------------------------------------
# Committed files
# ---------------------------------------------------------------------------------------------


def committed_files(root: Path, t: Thresholds = THRESHOLDS) -> dict[Path, str]:
    """{path under root: the text it must hold}."""
    return {
        root / DATASOURCES_FILE: _yaml(
            "Grafana datasources: Prometheus (every panel and rule), Jaeger (traces), Alertmanager.",
            datasources()),
        root / DASHBOARD_PROVIDERS_FILE: _yaml(
            f"Grafana loads every dashboard JSON in {CONTAINER_DASHBOARDS_DIR} (observability/grafana/dashboards).",
            dashboard_providers()),
        root / DASHBOARD_FILE: json.dumps(dashboard(t), indent=2) + "\n",
        root / ALERT_RULES_FILE: _yaml(
            "Grafana-managed alert rules: the alternative to the Prometheus rules + Alertmanager, same thresholds.",
            alert_rules(t)),
        root / CONTACT_POINTS_FILE: _yaml(
            f"Grafana's email contact point; recipients from ${ALERT_EMAIL_VARIABLE} (comma-separated).",
            contact_points()),
        root / POLICIES_FILE: _yaml(
            "Grafana's notification policy: one email per alert name and model, 30s / 5m / 4h as in Alertmanager.",
            policies()),
    }
