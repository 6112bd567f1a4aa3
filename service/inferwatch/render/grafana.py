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
  thresholds and ``for``; an email contact point; the notification policy (group by alertname,
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

from inferwatch.contract.thresholds import THRESHOLDS, RouteTimings, Thresholds
from inferwatch.render.prometheus_rules import (
    MODEL_BY,
    AlertRule,
    QualityRecords,
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
# Grafana's own variables, as the panel queries spell them.
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
            "HighCPUUsage", f"system_cpu_usage{{{t.selector}}}", t.cpu_percent, t.cpu_for, "percent",
            f"CPU usage is {{{{ humanize $values.B.Value }}}}% on {{{{ $labels.instance }}}} "
            f"(threshold: {number(t.cpu_percent)}%).",
        ),
        AlertCondition(
            "HighPredictionLatency", latency_quantile_expr(t), t.latency_seconds, t.latency_for, "s",
            f"{q} latency of predictions ({{{{ $labels.job }}}}) is {{{{ humanizeDuration $values.B.Value }}}} "
            f"over the last {t.latency_window} (threshold: {latency}s). "
            f"Slow traces: {jaeger_slow_traces_url(t)}",
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
    """The recording rule that records exactly ``expr`` (what an alert evaluates), as a query."""
    record = next(rule.record for rule in recording_group(t).rules if rule.expr == expr)
    return f"{record}{{{t.selector}}}"


# ---------------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------------


def _matchers(t: Thresholds, *extra: str) -> str:
    """The job's series of the instances chosen on the dashboard, and ``extra`` matchers."""
    return "{" + ", ".join((t.selector, f'instance=~"{INSTANCE}"', *extra)) + "}"


def _http(t: Thresholds, *extra: str) -> str:
    """Like :func:`_matchers`, for the HTTP metrics, which also carry the route."""
    return _matchers(t, f'route=~"{ROUTE}"', *extra)


def _rate(metric: str, selector: str, window: str = RATE_INTERVAL) -> str:
    return f"rate({metric}{selector}[{window}])"


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
                width: int = 12, links: Iterable[dict] = ()) -> dict:
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
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": PROMETHEUS.ref,
        "gridPos": {"h": 8, "w": width},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "links": list(links),
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
            "Scrape targets up",
            "Can Prometheus reach inferwatch? The number of scrape targets of job inferwatch that "
            "answered the last scrape (the collector's exporter, or each service when scraped "
            "directly). 0 is what InferwatchDown fires on.",
            "none", _target(f"sum by (job) (up{{{t.selector}}})", "{{job}}"), thresholds=_below(1), decimals=0),
        _stat(
            f"{q} latency, {t.latency_window} (alert view)",
            f"Would HighPredictionLatency fire? The {q} of prediction latency over "
            f"{t.latency_window}, every instance summed: the alert's own expression (recording rule). "
            f"Red from {number(latency.threshold)} s; the alert fires above it for {latency.for_}. "
            "Ignores the instance and route selectors, as the alert does.",
            latency.unit, _target(_recorded(latency.query, t), "{{job}}"), thresholds=_above(latency.threshold)),
        _stat(
            f"Failure ratio, {t.failure_window} (alert view)",
            f"Would HighPredictionFailureRate fire? The failed share of predictions over "
            f"{t.failure_window}, every instance summed: the alert's own expression (recording rule). "
            f"Red from {percent(failure.threshold)}%; the alert fires above it for {failure.for_}. "
            "Empty while there are no predictions (0/0).",
            failure.unit, _target(_recorded(failure.query, t), "{{job}}"), thresholds=_above(failure.threshold)),
        _stat(
            "Failed predictions in range",
            "How many predictions failed in the selected time range? Every reason counted "
            "(bad input, model error, MLflow down or too slow); 'Failures by reason' says which.",
            "short",
            _target(f"sum by (job) (increase(prediction_failure_total{_matchers(t)}[{TIME_RANGE}]))", "{{job}}"),
            decimals=0),
    ]


def _requests(t: Thresholds) -> list[dict]:
    errors = _http(t, 'status=~"4..|5.."')
    return [
        _row("Requests"),
        _timeseries(
            "Request rate by route",
            "How much traffic does each route get? HTTP requests per second that the service "
            "answered (any status), from http_requests_total.",
            "reqps", [_target(f"sum by (route) ({_rate('http_requests_total', _http(t))})", "{{route}}")]),
        _timeseries(
            "Throughput reported by the service",
            "What request rate does each instance measure itself? http_requests_throughput, the "
            "seed's gauge: requests per second over the service's last host-sampling interval. "
            "Should follow 'Request rate by route'.",
            "reqps", [_target(f"sum by (instance) (http_requests_throughput{_matchers(t)})", "{{instance}}")]),
        _timeseries(
            "Errors by status",
            "Which errors does the service return, and where? 4xx and 5xx answers per second by "
            "route and status (400 bad input, 404 unknown path, 503 MLflow down, 504 MLflow too "
            "slow, 502 MLflow error).",
            "reqps", [_target(
                f"sum by (route, status) ({_rate('http_requests_total', errors)})",
                "{{status}} {{route}}")]),
        _timeseries(
            "Active requests",
            "How many requests are in flight right now? A count that keeps rising means requests "
            "are waiting on MLflow.",
            "short", [_target(f"sum by (instance) (active_requests{_matchers(t)})", "{{instance}}")]),
    ]


def _latency(t: Thresholds) -> list[dict]:
    quantiles = sorted({0.5, t.latency_quantile, 0.99})
    buckets = _rate("http_request_duration_seconds_bucket", _http(t))
    targets = [
        _target(f"histogram_quantile({number(q)}, sum by (le) ({buckets}))", "p" + percent(q),
                ref=chr(ord("A") + i), exemplar=True)
        for i, q in enumerate(quantiles)
    ]
    latency = number(t.latency_seconds)
    return [
        _row("Latency"),
        _timeseries(
            "Request latency p50 / p95 / p99",
            f"How long do requests take? Latency quantiles of the selected routes, every instance "
            f"summed. The line is HighPredictionLatency's threshold, {latency} s (a bucket edge); the "
            f"alert watches the {'p' + percent(t.latency_quantile)} of /predict and /invocations over "
            f"{t.latency_window}. The MLflow call alone has no metric in the contract: its duration "
            "is the client span under each trace in Jaeger (panel link: traces slower than "
            f"{latency} s).",
            "s", targets, thresholds=_above(t.latency_seconds), width=24,
            links=[{"title": f"Traces slower than {latency} s (Jaeger)", "url": jaeger_slow_traces_url(t),
                    "targetBlank": True}]),
    ]


def _predictions(t: Thresholds) -> list[dict]:
    success = f"sum by (job) ({_rate('prediction_success_total', _matchers(t))})"
    failure = f"sum by (job) ({_rate('prediction_failure_total', _matchers(t))})"
    # Success below this is failure above HighPredictionFailureRate's threshold.
    healthy_success = round(1 - t.failure_ratio, 9)
    return [
        _row("Predictions"),
        _timeseries(
            "Prediction success rate",
            f"What share of predictions does the model answer? Successes over all predictions. "
            f"The line is {percent(healthy_success)}%: below it the failure ratio is above "
            f"HighPredictionFailureRate's {percent(t.failure_ratio)}%. Empty while there are no "
            "predictions.",
            "percentunit", [_target(f"{success}\n/\n({success} + {failure})", "{{job}}")],
            thresholds=_below(healthy_success), maximum=1, width=8),
        _timeseries(
            "Predictions answered and failed",
            "How many predictions per second succeed and fail? prediction_success_total and "
            "prediction_failure_total, every instance summed.",
            "reqps", [_target(success, "answered"), _target(failure, "failed", ref="B")], width=8),
        _timeseries(
            "Failures by reason",
            "Why do predictions fail? Failed predictions per second by reason: invalid_json, "
            "invalid_input, unsupported_media_type, payload_too_large, model_rejected, "
            "upstream_unavailable, upstream_timeout, upstream_error.",
            "reqps", [_target(
                f"sum by (reason) ({_rate('prediction_failure_by_reason_total', _matchers(t))})", "{{reason}}")],
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
            "percent", [_target(f"sum by (instance) (system_cpu_usage{_matchers(t)})", "{{instance}}")],
            thresholds=_above(t.cpu_percent), maximum=100, width=6),
        _timeseries(
            "Memory used",
            "Is the host running out of memory? Memory used in percent of the total, per instance.",
            "percent", [_target(f"sum by (instance) (system_ram_usage{_matchers(t)})", "{{instance}}")],
            maximum=100, width=6),
        _timeseries(
            "Memory used (MiB)",
            "How much memory does the host use? Memory used in MiB, per instance.",
            "mbytes", [_target(f"sum by (instance) (system_memory_usage_mb{_matchers(t)})", "{{instance}}")],
            width=6),
        _timeseries(
            "Disk used",
            "Is the disk filling up? Space used in percent at the path the service watches "
            "(--disk-path), per instance and mount point.",
            "percent",
            [_target(f"sum by (instance, mountpoint) (system_disk_usage{_matchers(t)})", "{{instance}} {{mountpoint}}")],
            maximum=100, width=6),
    ]


def _quality(t: Thresholds) -> list[dict]:
    r = QualityRecords(t)
    job = "{" + t.selector + "}"
    m = _matchers(t)
    by = f"sum by ({MODEL_BY})"
    drift = _thresholds(("green", None), ("yellow", t.drift_watch), ("red", t.drift_act))
    expected = (f"max by ({MODEL_BY}, feature, bin) (model_feature_expected_share{job})")
    w = t.drift_window
    return [
        _row("Model quality"),
        _timeseries(
            "Input drift (PSI) by feature",
            f"Do the inputs still look like the training data? The population stability index of each "
            f"feature over the last {w}, every instance's rows summed, against the reference profile. "
            f"Yellow from {number(t.drift_watch)} (worth a look), red from {number(t.drift_act)}: "
            f"ModelInputDrift fires above it for {t.drift_for} once {t.drift_min_rows} rows are counted.",
            "short", [_target(f"sum by ({MODEL_BY}, feature) ({r.feature_psi}{job})",
                              "{{model}} {{model_version}} {{feature}}")],
            thresholds=drift),
        _timeseries(
            "Largest bin shift by feature",
            f"Which feature moved, and how much? The largest difference, over a feature's bins, between "
            f"its share of the rows of the last {w} and its share in training (0.2: a fifth of the rows "
            "moved into or out of one bin).",
            "percentunit", [_target(
                f"max by ({MODEL_BY}, feature) (abs(\n  {r.feature_share}{job}\n  - on({MODEL_BY}, feature, bin)\n"
                f"  {expected}\n))", "{{model}} {{model_version}} {{feature}}")], maximum=1),
        _timeseries(
            "Prediction drift (PSI)",
            f"Does the model still answer as it did on the training data? PSI of its answers (classes or "
            f"bins) over the last {w} against the reference. ModelPredictionDrift fires above "
            f"{number(t.drift_act)} for {t.drift_for}.",
            "short", [_target(f"{by} ({r.prediction_psi}{job})", "{{model}} {{model_version}}")],
            thresholds=drift, width=8),
        _timeseries(
            "Prediction shares against the reference",
            f"What does the model predict? Each class's (or bin's) share of the answers of the last {w}, "
            "and its share on the training data (dashed in spirit: the 'reference' lines).",
            "percentunit", [
                _target(f"sum by ({MODEL_BY}, bin) (increase(model_prediction_bin_total{m}[{w}]))\n"
                        f"/ ignoring(bin) group_left()\n({by} (increase(model_prediction_bin_total{m}[{w}])) > 0)",
                        "{{model_version}} {{bin}}"),
                _target(f"max by ({MODEL_BY}, bin) (model_prediction_expected_share{job})",
                        "{{model_version}} {{bin}} reference", ref="B"),
            ], maximum=1, width=8),
        _timeseries(
            "Missing values by feature",
            "Which features arrive empty? The share of each feature's values that were null, NaN or "
            "absent, among the rows the model answered.",
            "percentunit", [_target(
                f"sum by ({MODEL_BY}, feature) ({_rate('model_feature_missing_total', m)})\n/\n"
                f"(sum by ({MODEL_BY}, feature) ({_rate('model_feature_missing_total', m)})\n"
                f" + sum by ({MODEL_BY}, feature) ({_rate('model_feature_bin_total', m)}))",
                "{{model}} {{model_version}} {{feature}}")], maximum=1, width=8),
        _timeseries(
            "Signature violations and unreadable bodies",
            "Do clients send what the model's signature expects? Values per second that violate it, by "
            "column and kind (missing, wrong_type; unexpected columns all count as __other__), and "
            f"bodies whose rows could not be read. ModelInputViolations fires when one column and kind "
            f"exceeds {percent(t.violation_ratio)}% of the rows for {t.violation_for}.",
            "cps", [
                _target(f"sum by ({MODEL_BY}, column, kind) ({_rate('model_input_violation_total', m)})",
                        "{{model_version}} {{column}} {{kind}}"),
                _target(f"sum by ({MODEL_BY}, format) ({_rate('model_input_unreadable_total', m)})",
                        "{{model_version}} unreadable {{format}}", ref="B"),
                _target(f"{by} ({_rate('model_input_rows_total', m)})", "{{model_version}} rows sent", ref="C"),
            ], width=8),
        _timeseries(
            "Online accuracy",
            f"Is the model still right? The share of feedback labels equal to the predicted class over "
            f"the last {t.accuracy_window}. The line is ModelAccuracyLow's floor, "
            f"{percent(t.accuracy_floor)}% (judged once {t.accuracy_min_labels} labels arrived).",
            "percentunit", [_target(
                f"{by} (increase(model_feedback_correct_total{m}[{t.accuracy_window}]))\n/\n"
                f"({by} (increase(model_feedback_labels_total{m}[{t.accuracy_window}])) > 0)",
                "{{model}} {{model_version}}")],
            thresholds=_below(t.accuracy_floor), maximum=1, width=8),
        _timeseries(
            "Feedback labels and refusals",
            "Is ground truth arriving? Labels per second matched to their prediction, and feedback "
            "requests refused per second by reason (unknown_prediction, token_expired, invalid_label, ...).",
            "cps", [
                _target(f"{by} ({_rate('model_feedback_labels_total', m)})", "{{model_version}} labels"),
                _target(f"sum by ({MODEL_BY}, reason) ({_rate('model_feedback_rejected_total', m)})",
                        "{{model_version}} refused {{reason}}", ref="B"),
            ], width=8),
        _timeseries(
            "Regression error from feedback",
            "How far off is a regressor? Mean absolute error, root mean squared error and the 90th "
            "percentile of the absolute error of the predictions that got a label, per model version.",
            "short", [
                _target(f"{by} ({_rate('model_feedback_absolute_error_sum', m)})\n/\n"
                        f"{by} ({_rate('model_feedback_absolute_error_count', m)})", "{{model_version}} MAE"),
                _target(f"sqrt(\n  {by} ({_rate('model_feedback_squared_error_total', m)})\n  /\n"
                        f"  {by} ({_rate('model_feedback_absolute_error_count', m)})\n)", "{{model_version}} RMSE",
                        ref="B"),
                _target(f"histogram_quantile(0.9, sum by ({MODEL_BY}, le) "
                        f"({_rate('model_feedback_absolute_error_bucket', m)}))", "{{model_version}} p90", ref="C"),
            ], width=8),
        _timeseries(
            "Predictions by model version",
            "Which model versions answer, and how much (a canary beside the stable version)? "
            "Predictions answered per second by model and version.",
            "reqps", [_target(f"{by} ({_rate('prediction_success_total', m)})", "{{model}} {{model_version}}")],
            width=8),
        _stat(
            "Models loaded",
            "Which model does each proxy front, and did it load a signature and a reference profile? "
            "Instances per model, version and flavor.",
            "short", _target(f"sum by ({MODEL_BY}, flavor, signature, reference) (model_info{m})",
                             "{{model}} {{model_version}} {{flavor}} signature={{signature}} reference={{reference}}"),
            decimals=0),
    ]


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
        "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "regex": "", "sort": 1, "hide": 0,
    }


def dashboard(t: Thresholds = THRESHOLDS) -> dict:
    panels = _layout([*_at_a_glance(t), *_requests(t), *_latency(t), *_predictions(t), *_quality(t), *_host(t)])
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
            # prediction_success_total exists from start-up, before any request.
            _query_variable("instance", "Instance", f"label_values(prediction_success_total{{{t.selector}}}, instance)",
                            "Service instances (the instance label: service.instance.id through the "
                            "collector, host:port when scraped directly)."),
            _query_variable("route", "Route",
                            f'label_values(http_requests_total{{{t.selector}, instance=~"{INSTANCE}"}}, route)',
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
            "group_by": ["alertname"],
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
            "Grafana's notification policy: one email per alert name, 30s / 5m / 4h as in Alertmanager.",
            policies()),
    }
