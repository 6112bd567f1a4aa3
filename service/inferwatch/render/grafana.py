"""Grafana as code: datasources, the "ML model service" dashboard and Grafana-managed alerting.

Grafana runs only in docker-compose (and the Helm chart), so everything it reads is a file under
``observability/grafana/``, and every file but ``grafana.ini`` is rendered here. The dashboard is
the panel model (:mod:`inferwatch.render.panels`, also drawn as Prometheus console pages by
:mod:`inferwatch.render.consoles`) built with Grafana's own SDK, grafana-foundation-sdk, in its
Grafana 11.6 flavour (the Grafana that compose runs): the SDK's builders and types write every
field the schema requires, and ``tests/test_grafana_schema.py`` checks the file with the SDK's Go
flavour in strict mode. Thresholds come from :data:`inferwatch.contract.thresholds.THRESHOLDS`
(which also render the Prometheus rules), queries from the metric contract through
:mod:`inferwatch.render.promql`: a panel threshold, a Grafana rule threshold and a Prometheus rule
threshold are one number. ``python -m inferwatch.render --check`` (and ``tests/test_grafana.py``)
fail when a committed file differs from the rendering; the tests also run every query against a
real Prometheus scraping the real service. From the repository root::

    python -m inferwatch.render --check    # exit 1 and list the files that differ
    python -m inferwatch.render --write    # rewrite them after editing THRESHOLDS, panels.py or this module

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

What the SDK types and what it does not: the dashboard is the SDK's ``Dashboard`` whole. In the
alerting files each rule with its queries (the Prometheus query, the reduce and threshold
expressions), the email receiver and the notification policy are the SDK's alerting types; the
SDK models Grafana's HTTP provisioning API, not the files, so the files' envelopes (``apiVersion``,
a group's ``orgId``/``name``/``folder``, a contact point's ``receivers`` list, a rule's
``dashboardUid``/``panelId``) are written here. The SDK has no type for datasource or dashboard
provider provisioning: those two files are plain data.

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
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import alerting as alerting_builders
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import expr as expr_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_models
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from inferwatch.contract.thresholds import THRESHOLDS, RouteTimings, Thresholds
from inferwatch.render import panels
from inferwatch.render.alertmanager import group_by
from inferwatch.render.panels import DASHBOARD_TITLE, DASHBOARD_UID, Board, Panel, Row, Step, Variable
from inferwatch.render.prometheus_rules import cpu_expr, failure_ratio_expr, latency_quantile_expr, rule_groups
from inferwatch.render.rules import AlertRule, jaeger_slow_traces_url
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

    @property
    def sdk_ref(self) -> models.DataSourceRef:
        return models.DataSourceRef(type_val=self.type, uid=self.uid)


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


def as_json(sdk_object: object) -> dict:
    """An SDK object as the plain JSON data Grafana reads (through the SDK's own encoder)."""
    return json.loads(json.dumps(sdk_object, cls=JSONEncoder))


# ---------------------------------------------------------------------------------------------
# Datasources and the dashboard provider (the SDK has no provisioning types for these)
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


# ---------------------------------------------------------------------------------------------
# The dashboard: the panel model built with the SDK
# ---------------------------------------------------------------------------------------------


def _steps(steps: tuple[Step, ...]) -> dashboard_builders.ThresholdsConfig:
    return (dashboard_builders.ThresholdsConfig()
            .mode(models.ThresholdsMode.ABSOLUTE)
            .steps([models.Threshold(value=step.value, color=step.color) for step in steps]))


def _target(query: panels.Query) -> prometheus.Dataquery:
    target = (prometheus.Dataquery()
              .ref_id(query.ref)
              .datasource(PROMETHEUS.sdk_ref)
              .editor_mode(prometheus_models.QueryEditorMode.CODE)
              .expr(query.expr)
              .legend_format(query.legend)
              .range())
    return target.exemplar(True) if query.exemplar else target


def _data_link(link: panels.Link) -> dashboard_builders.DashboardLink:
    return (dashboard_builders.DashboardLink(link.title)
            .type(models.DashboardLinkType.LINK)
            .url(link.url)
            .target_blank(True))


def _common(builder, panel: Panel, placed: panels.Placed):
    """What every panel kind has: id, place, text, datasource, unit, scale, thresholds, queries."""
    builder = (builder
               .id(placed.id)
               .title(panel.title)
               .description(panel.description)
               .datasource(PROMETHEUS.sdk_ref)
               .grid_pos(models.GridPos(h=panel.height, w=panel.width, x=placed.x, y=placed.y))
               .unit(panel.unit)
               .thresholds(_steps(panel.steps)))
    if panel.minimum is not None:
        builder = builder.min(panel.minimum)
    if panel.maximum is not None:
        builder = builder.max(panel.maximum)
    if panel.decimals is not None:
        builder = builder.decimals(panel.decimals)
    for query in panel.queries:
        builder = builder.with_target(_target(query))
    return builder


def _timeseries(panel: Panel, placed: panels.Placed) -> timeseries.Panel:
    builder = (_common(timeseries.Panel(), panel, placed)
               .color_scheme(dashboard_builders.FieldColor().mode(models.FieldColorModeId.PALETTE_CLASSIC))
               .draw_style(common.GraphDrawStyle.LINE)
               .line_width(1)
               .fill_opacity(10)
               .show_points(common.VisibilityMode.NEVER)
               .span_nulls(False)
               # Draw the alert threshold as a line; panels without one draw nothing.
               .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(
                   common.GraphThresholdsStyleMode.LINE if panel.has_thresholds else common.GraphThresholdsStyleMode.OFF))
               .legend(common_builders.VizLegendOptions()
                       .display_mode(common.LegendDisplayMode.LIST)
                       .placement(common.LegendPlacement.BOTTOM)
                       .show_legend(True)
                       .calcs([]))
               .tooltip(common_builders.VizTooltipOptions()
                        .mode(common.TooltipDisplayMode.MULTI)
                        .sort(common.SortOrder.DESCENDING)))
    if panel.links:
        builder = builder.data_links([_data_link(link) for link in panel.links])
    return builder


def _stat(panel: Panel, placed: panels.Placed) -> stat.Panel:
    return (_common(stat.Panel(), panel, placed)
            .color_scheme(dashboard_builders.FieldColor().mode(models.FieldColorModeId.THRESHOLDS))
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
            .color_mode(common.BigValueColorMode.BACKGROUND if panel.has_thresholds else common.BigValueColorMode.NONE)
            .graph_mode(common.BigValueGraphMode.AREA)
            .justify_mode(common.BigValueJustifyMode.AUTO)
            .orientation(common.VizOrientation.AUTO)
            .text_mode(common.BigValueTextMode.AUTO)
            .wide_layout(True)
            .show_percent_change(False)
            .percent_change_color_mode(common.PercentChangeColorMode.STANDARD))


def _row(row: Row, placed: panels.Placed) -> dashboard_builders.Row:
    return (dashboard_builders.Row(row.title)
            .id(placed.id)
            .collapsed(False)
            .grid_pos(models.GridPos(h=panels.ROW_HEIGHT, w=panels.GRID_COLUMNS, x=placed.x, y=placed.y)))


def _variable(variable: Variable) -> dashboard_builders.QueryVariable:
    return (dashboard_builders.QueryVariable(variable.name)
            .label(variable.label)
            .description(variable.description)
            .datasource(PROMETHEUS.sdk_ref)
            .query({"qryType": 1, "query": variable.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)  # a new instance shows up without a reload
            # No custom "All" value: Grafana then sends every listed value as (a|b|c), so "All" stays
            # the listed models, where ".*" would match every other job's same-named series too.
            .include_all(True)
            .multi(True)
            .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .options([])
            .regex("")
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .hide(models.VariableHide.DONT_HIDE))


def dashboard_sdk(board: Board) -> models.Dashboard:
    """The dashboard as the SDK's ``Dashboard``."""
    builder = (dashboard_builders.Dashboard(board.title)
               .uid(board.uid)
               .description(board.description)
               .tags(list(board.tags))
               .readonly()
               .tooltip(models.DashboardCursorSync.CROSSHAIR)
               .refresh(board.refresh)
               .time(board.time_from, "now")
               .timezone("browser")
               .version(1)
               .links([])
               .annotations([]))
    for variable in board.variables:
        builder = builder.with_variable(_variable(variable))
    for placed in panels.layout(board):
        item = placed.item
        if isinstance(item, Row):
            builder = builder.with_row(_row(item, placed))
        elif item.kind == "timeseries":
            builder = builder.with_panel(_timeseries(item, placed))
        else:
            builder = builder.with_panel(_stat(item, placed))
    return builder.build()


def dashboard(t: Thresholds = THRESHOLDS) -> dict:
    """The dashboard JSON, as Grafana reads it."""
    return as_json(dashboard_sdk(panels.board(t)))


def panel_titled(board: dict, title: str) -> dict:
    return next(panel for panel in board["panels"] if panel["title"] == title)


# ---------------------------------------------------------------------------------------------
# Grafana-managed alerting
# ---------------------------------------------------------------------------------------------

def alert_panel_title(alert: str, t: Thresholds = THRESHOLDS) -> str:
    """The panel a Grafana rule links to: the one that shows what the rule evaluates."""
    return {
        "HighCPUUsage": panels.CPU_PANEL,
        "HighPredictionLatency": panels.latency_alert_panel_title(t),
        "HighPredictionFailureRate": panels.failure_alert_panel_title(t),
    }[alert]


def _rule_uid(alert: str) -> str:
    """HighCPUUsage -> inferwatch-high-cpu-usage (Grafana uids: at most 40 characters)."""
    return "inferwatch-" + re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", alert).lower()


def _rule_queries(condition: AlertCondition) -> list[alerting_builders.Query]:
    """A: the Prometheus query at one instant; B: its last value; C: B above the threshold."""
    prometheus_query = (prometheus.Dataquery().ref_id("A").datasource(PROMETHEUS.sdk_ref)
                        .expr(condition.query).instant())
    reduce = (expr_builders.TypeReduce().ref_id("B").datasource(EXPRESSIONS.sdk_ref)
              .expression("A").reducer("last"))
    threshold = (expr_builders.TypeThreshold().ref_id("C").datasource(EXPRESSIONS.sdk_ref)
                 .expression("B")
                 .conditions([expr_builders.ExprTypeThresholdConditions().evaluator(
                     expr_builders.ExprTypeThresholdConditionsEvaluator().type("gt").params([condition.threshold]))]))
    return [
        alerting_builders.Query("A").datasource_uid(PROMETHEUS.uid).model(prometheus_query)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=ALERT_QUERY_LOOKBACK_SECONDS, to=0)),
        alerting_builders.Query("B").datasource_uid(EXPRESSIONS.uid).model(reduce)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=0, to=0)),
        alerting_builders.Query("C").datasource_uid(EXPRESSIONS.uid).model(threshold)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=0, to=0)),
    ]


# A rule in a provisioning file: the SDK's rule (the HTTP API's shape) without what the file puts
# on its group (folderUID, ruleGroup, orgID), with the panel link the file format adds.
_RULE_FILE_KEYS = ("uid", "title", "condition", "data", "noDataState", "execErrState", "for",
                   "dashboardUid", "panelId", "labels", "annotations", "isPaused")


def _grafana_rule(condition: AlertCondition, board: dict, t: Thresholds) -> dict:
    prometheus_rule = _prometheus_alert(condition.alert, t)
    rule = (alerting_builders.Rule(condition.alert)  # the title becomes the alertname label, as in Prometheus
            .uid(_rule_uid(condition.alert))
            .condition("C")
            .queries(_rule_queries(condition))
            # No traffic is not an outage (the ratio and the quantile are NaN or absent), exactly as
            # with the Prometheus rules; a broken query is an error, never silence.
            .no_data_state("OK")
            .exec_err_state("Error")
            .for_val(condition.for_)
            .labels(dict(prometheus_rule.labels))
            .annotations({"summary": prometheus_rule.annotations["summary"],
                          "description": condition.description})
            .is_paused(False))
    data = as_json(rule.build())
    data["data"] = [{key: query[key] for key in ("refId", "relativeTimeRange", "datasourceUid", "model")}
                    for query in data["data"]]
    data.update(dashboardUid=DASHBOARD_UID, panelId=panel_titled(board, alert_panel_title(condition.alert, t))["id"])
    return {key: data[key] for key in _RULE_FILE_KEYS}


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
    receiver = as_json(alerting_builders.ContactPoint()
                       .uid(CONTACT_POINT)
                       .name(CONTACT_POINT)
                       .type("email")
                       # Grafana expands the variable at start; commas separate addresses.
                       .settings({"addresses": f"${{{ALERT_EMAIL_VARIABLE}}}", "singleEmail": False})
                       .disable_resolve_message(False)
                       .build())
    name = receiver.pop("name")
    return {
        "apiVersion": 1,
        "contactPoints": [{
            "orgId": 1,
            "name": name,
            "receivers": [{key: receiver[key] for key in ("uid", "type", "settings", "disableResolveMessage")}],
        }],
    }


def policies(timings: RouteTimings = RouteTimings()) -> dict:
    policy = as_json(alerting_builders.NotificationPolicy()
                     .receiver(CONTACT_POINT)
                     .group_by(group_by())
                     .group_wait(timings.group_wait)
                     .group_interval(timings.group_interval)
                     .repeat_interval(timings.repeat_interval)
                     .build())
    return {
        "apiVersion": 1,
        "policies": [{"orgId": 1, **{key: policy[key] for key in (
            "receiver", "group_by", "group_wait", "group_interval", "repeat_interval")}}],
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
