"""Grafana as code: the provisioning files, the dashboard and Grafana-managed alerting.

No Grafana runs here (it runs only in docker-compose), so the files are checked two ways:

* statically, for the fields Grafana requires and for agreement with the rest of the repository:
  datasource uids, the dashboard's uid, title and panel ids, thresholds equal to THRESHOLDS and
  to the Prometheus rules, timings equal to Alertmanager's;
* live: a real Prometheus (Debian's package) with the committed rules scrapes a real proxy in
  front of a real MLflow model server after real traffic, under a model's job name, beside
  another team's exporter of the same metric names; every PromQL expression of every panel,
  template variable and Grafana rule must run and return data, and none may show the other
  job. Variables are resolved as Grafana resolves them (tests/dashboard_queries.py). The check
  is shown to fail when a metric is renamed.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

import alerting_stack
from alerting_stack import PROMETHEUS_DIR, REPO, ForeignExporter, PrometheusServer, poll, prometheus_test_config
from dashboard_queries import (
    DashboardQueries,
    dashboard,
    grafana_rules,
    panel_expressions,
    query_panels,
    rule_query,
    variable_queries,
)
from inferwatch.contract.metrics import MAPPINGS, PrometheusType
from inferwatch.contract.thresholds import THRESHOLDS, RouteTimings, Thresholds
from inferwatch.render import grafana
from inferwatch.render.prometheus_rules import rule_groups
from inferwatch.render.rules import RecordingRule
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.render.text import number
from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import Proxy, start_proxy_process, stop_proxy

GRAFANA_DIR = REPO / grafana.GRAFANA_DIR
PROVISIONING_FILES = sorted((GRAFANA_DIR / "provisioning").rglob("*.yml"))
GRAFANA_INI = GRAFANA_DIR / "grafana.ini"
COMPOSE = REPO / "docker-compose.yml"

LIVE_TIMEOUT = 45.0
# The job the live proxy is scraped as: a model's name, not "inferwatch".
LIVE_JOB = "fraud-model"
MARKER = 'target_info{telemetry_distro_name="inferwatch"'


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rule_threshold(rule: dict) -> float:
    [threshold] = [data["model"] for data in rule["data"] if data["model"].get("type") == "threshold"]
    [condition] = threshold["conditions"]
    assert condition["evaluator"]["type"] == "gt"
    [value] = condition["evaluator"]["params"]
    return value


def prometheus_alerts() -> dict[str, dict]:
    """The committed Prometheus alert rules, by name."""
    return {rule["alert"]: rule for path in (PROMETHEUS_DIR / "rules").glob("*.yml")
            for group in load_yaml(path)["groups"] for rule in group["rules"] if "alert" in rule}


def red_from(panel: dict) -> float:
    """The value from which a panel turns red (its alert threshold)."""
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    [red] = [step["value"] for step in steps if step["color"] == "red" and step["value"] is not None]
    return red


# ---------------------------------------------------------------------------------------------
# The files are the rendering
# ---------------------------------------------------------------------------------------------


def test_the_committed_grafana_files_are_the_rendering_of_the_thresholds():
    for path, text in grafana.committed_files(REPO).items():
        assert path.read_text() == text, f"{path} differs: run python -m inferwatch.render --write"


def test_every_file_in_provisioning_is_rendered_and_declares_api_version_1():
    rendered = {path for path in grafana.committed_files(REPO) if path.suffix == ".yml"}
    assert set(PROVISIONING_FILES) == rendered
    for path in PROVISIONING_FILES:
        assert load_yaml(path)["apiVersion"] == 1, path


# ---------------------------------------------------------------------------------------------
# Datasources
# ---------------------------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, dict]:
    return {source["uid"]: source for source in load_yaml(REPO / grafana.DATASOURCES_FILE)["datasources"]}


def test_datasources_have_fixed_unique_uids_names_types_and_proxy_access():
    sources = load_yaml(REPO / grafana.DATASOURCES_FILE)["datasources"]
    assert len({s["uid"] for s in sources}) == len({s["name"] for s in sources}) == len(sources) == 3
    assert {(s["uid"], s["type"]) for s in sources} == {
        ("prometheus", "prometheus"), ("jaeger", "jaeger"), ("alertmanager", "alertmanager")}
    assert all(s["access"] == "proxy" for s in sources)
    assert [s["uid"] for s in sources if s.get("isDefault")] == ["prometheus"]


def test_datasource_urls_name_the_compose_services_and_their_ports():
    services = load_yaml(COMPOSE)["services"]
    sources = provisioned_datasources()
    for uid, port in (("prometheus", 9090), ("alertmanager", 9093), ("jaeger", 16686)):
        assert sources[uid]["url"] == f"http://{uid}:{port}"
        assert uid in services, f"docker-compose.yml has no {uid} service"
    assert "--web.listen-address=:9090" in services["prometheus"]["command"]
    assert "--web.listen-address=:9093" in services["alertmanager"]["command"]
    assert any(str(port).endswith(":16686") for port in services["jaeger"]["ports"])


def test_the_prometheus_datasource_links_exemplar_trace_ids_to_jaeger_and_knows_the_scrape_interval():
    prometheus = provisioned_datasources()["prometheus"]["jsonData"]
    assert prometheus["exemplarTraceIdDestinations"] == [{"name": "trace_id", "datasourceUid": "jaeger"}]
    scrape_interval = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
    assert prometheus["timeInterval"] == scrape_interval
    assert prometheus["alertmanagerUid"] == "alertmanager"


def test_the_alertmanager_datasource_speaks_to_a_prometheus_alertmanager():
    assert provisioned_datasources()["alertmanager"]["jsonData"]["implementation"] == "prometheus"


# ---------------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------------


def test_the_dashboard_has_its_uid_and_title_and_unique_panel_ids():
    board = dashboard()
    assert board["uid"] == "inferwatch-ml-model-service" and len(board["uid"]) <= 40
    assert board["title"] == "ML model service"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)


def test_compose_runs_the_grafana_release_line_the_dashboard_is_built_for():
    """grafana-foundation-sdk 1769699379!11.6.0 is the Grafana 11.6 flavour of the schema."""
    [image] = [line.split("=", 1)[1] for line in (REPO / ".env.example").read_text().splitlines()
               if line.startswith("GRAFANA_IMAGE=")]
    sdk_line = importlib.metadata.version("grafana-foundation-sdk").split("!")[-1].rsplit(".", 1)[0]
    assert image.startswith("grafana/grafana:") and image.split(":")[1].startswith(sdk_line + "."), (image, sdk_line)


def test_the_dashboard_provider_reads_the_folder_the_dashboard_is_mounted_at():
    [provider] = load_yaml(REPO / grafana.DASHBOARD_PROVIDERS_FILE)["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == grafana.CONTAINER_DASHBOARDS_DIR


def test_panels_do_not_overlap_on_the_24_column_grid():
    cells = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_panel_query_and_variable_reads_a_provisioned_datasource():
    board = dashboard()
    sources = provisioned_datasources()
    refs = [(panel["title"], panel["datasource"]) for panel in query_panels(board)]
    refs += [(f"{panel['title']} [{t['refId']}]", t["datasource"]) for panel in query_panels(board) for t in panel["targets"]]
    refs += [(variable["name"], variable["datasource"]) for variable in board["templating"]["list"]]
    for where, ref in refs:
        assert ref["uid"] in sources, f"{where}: unknown datasource uid {ref['uid']}"
        assert ref["type"] == sources[ref["uid"]]["type"], where


def test_every_panel_says_what_it_answers_and_has_a_unit():
    for panel in query_panels(dashboard()):
        question = panel["description"].split("?")[0]
        assert "?" in panel["description"] and len(question.split()) >= 3, (
            f"{panel['title']}: the description should open with the question the panel answers")
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]


def test_units_match_what_each_metric_measures():
    units = {"percent": [], "percentunit": [], "s": [], "reqps": [], "mbytes": []}
    for panel in query_panels(dashboard()):
        units.setdefault(panel["fieldConfig"]["defaults"]["unit"], []).append(panel["title"])
    assert units["percent"] == ["CPU usage", "Memory used", "Disk used"]
    assert units["mbytes"] == ["Memory used (MiB)"]  # Grafana's mbytes is MiB (decmbytes is MB)
    assert units["s"] == ["p95 latency, 5m (alert view)", "Request latency p50 / p95 / p99",
                          "Model time vs proxy time (p95)", "GenAI duration p95 by operation"]
    assert "Prediction success rate" in units["percentunit"] and "Request rate by route" in units["reqps"]


RECORDED = tuple(rule.record for group in rule_groups(THRESHOLDS) for rule in group.rules
                 if isinstance(rule, RecordingRule))


def reads_recorded_series_only(expr: str) -> bool:
    """Every series ``expr`` selects is a recording rule's (which keeps inferwatch's series only,
    already summed per model)."""
    selected = re.findall(r"(?<![\w:])([a-zA-Z_:][\w:]*)\{", expr)
    return bool(selected) and all(name in RECORDED for name in selected)


def test_every_query_sums_by_model_so_several_models_and_instances_stay_apart():
    """Each query aggregates by the model labels (job) first, or reads a recording rule that does,
    and every line's legend names its model."""
    by_model = f"by ({', '.join(THRESHOLDS.model_labels)}"
    for panel in query_panels(dashboard()):
        for target in panel["targets"]:
            where, expr = f"{panel['title']} [{target['refId']}]", target["expr"]
            assert by_model in expr or reads_recorded_series_only(expr), f"{where}: {expr}"
            assert target["legendFormat"].startswith("{{job}}"), where


def test_every_query_reads_only_inferwatchs_series_and_every_variable_it_uses_is_defined():
    """Through the marker, or a recording rule (which keeps inferwatch's series only); the model
    and instance variables list what the marker lists, so no other job can be chosen."""
    board = dashboard()
    defined = {variable["name"] for variable in board["templating"]["list"]}
    for where, expr in panel_expressions(board):
        assert MARKER in expr or reads_recorded_series_only(expr), f"{where} reads series of any job: {expr}"
        assert 'job=~"$job"' in expr, f"{where} ignores the model variable"
    for name, query in variable_queries(board):
        assert MARKER in query or 'job=~"$job"' in query, f"variable {name} lists any job's values: {query}"
    for where, expr in [*panel_expressions(board), *variable_queries(board)]:
        used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval", "__range"}
        assert used <= defined, f"{where} uses undefined variables {used - defined}"


def test_the_selector_narrows_every_query_and_variable():
    """Every series read straight from the services; a recording rule's series were narrowed
    when they were recorded (and summed per model: the selector's other labels are gone), so
    the SLO panels choose only the models on those."""
    narrowed = grafana.dashboard(Thresholds(selector='env="prod"'))
    for where, expr in [*panel_expressions(narrowed), *variable_queries(narrowed)]:
        for name, selector in re.findall(r"\b([a-z_:]+)(\{[^}]*\})", expr):
            if name.startswith("slo:"):
                assert name in RECORDED and 'env="prod"' not in selector, f"{where}: {name}{selector}"
            else:
                assert 'env="prod"' in selector, f"{where}: {name}{selector}"


def test_the_model_instance_and_route_variables_offer_every_value_and_all_means_the_listed_ones():
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert list(variables) == ["job", "instance", "route"]
    for variable in variables.values():
        # No custom all value: "All" is the listed models, never ".*" (every job's series).
        # (An absent allValue is none: the SDK writes no null, and Grafana 11.6's schema has no
        # "definition", so the query is only in the query editor's own object.)
        assert variable["type"] == "query" and variable["includeAll"] and variable.get("allValue") is None
        assert variable["query"]["refId"] == "PrometheusVariableQueryEditor-VariableQuery"
        assert variable["query"]["query"].startswith("label_values(")


def test_panel_thresholds_equal_the_alert_thresholds():
    board = dashboard()
    panels = {panel["title"]: panel for panel in query_panels(board)}
    assert red_from(panels["CPU usage"]) == THRESHOLDS.cpu_percent
    assert red_from(panels["Request latency p50 / p95 / p99"]) == THRESHOLDS.latency_seconds
    assert red_from(panels["p95 latency, 5m (alert view)"]) == THRESHOLDS.latency_seconds
    assert red_from(panels["Failure ratio, 5m (alert view)"]) == THRESHOLDS.failure_ratio
    [_, healthy] = panels["Prediction success rate"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert healthy["color"] == "green" and math.isclose(healthy["value"], 1 - THRESHOLDS.failure_ratio)
    for title in ("CPU usage", "Request latency p50 / p95 / p99", "Prediction success rate"):
        assert panels[title]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line", title


def test_the_latency_panel_draws_p50_p95_p99_and_links_each_models_slow_traces():
    panel = next(p for p in query_panels(dashboard()) if p["title"] == "Request latency p50 / p95 / p99")
    model = " ".join("{{" + label + "}}" for label in THRESHOLDS.model_labels)
    assert [t["legendFormat"] for t in panel["targets"]] == [f"{model} p50", f"{model} p95", f"{model} p99"]
    assert [t["expr"].split(",")[0] for t in panel["targets"]] == [
        "histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"]
    [link] = panel["fieldConfig"]["defaults"]["links"]
    assert "minDuration=2s" in link["url"] and "service=${__field.labels.job}" in link["url"]
    assert "start=${__from}000&end=${__to}000" in link["url"], "the dashboard's range, in microseconds"
    assert all(target["exemplar"] for target in panel["targets"])


def test_the_model_time_panel_shows_the_p95_of_the_request_of_the_mlflow_call_and_their_difference():
    panel = next(p for p in query_panels(dashboard()) if p["title"] == "Model time vs proxy time (p95)")
    request, model, proxy = (target["expr"] for target in panel["targets"])
    assert "http_request_duration_seconds_bucket" in request and THRESHOLDS.latency_routes in request
    assert "upstream_request_duration_seconds_bucket" in model
    assert proxy == f"{request}\n-\n{model}"
    assert [t.get("exemplar", False) for t in panel["targets"]] == [False, True, False]
    assert red_from(panel) == THRESHOLDS.latency_seconds


def test_the_dashboard_reads_every_metric_of_the_contract():
    expressions = " ".join(expr for _, expr in panel_expressions(dashboard()))
    for mapping in MAPPINGS:
        name = mapping.prometheus_name + ("_bucket" if mapping.prometheus_type is PrometheusType.HISTOGRAM else "")
        assert re.search(rf"\b{name}\b", expressions), f"no panel reads {name}"


# ---------------------------------------------------------------------------------------------
# Grafana-managed alerting
# ---------------------------------------------------------------------------------------------

GRAFANA_ALERTS = ["HighCPUUsage", "HighPredictionLatency", "HighPredictionFailureRate"]


def test_grafana_rules_are_the_three_prometheus_alerts_with_their_expression_threshold_and_for():
    prometheus = prometheus_alerts()
    rules = grafana_rules()
    assert [rule["title"] for rule in rules] == GRAFANA_ALERTS
    for rule in rules:
        expected = prometheus[rule["title"]]
        threshold = rule_threshold(rule)
        # The Prometheus rule is "<query> > <threshold>": the same query, the same number.
        assert " ".join(expected["expr"].split()) == " ".join(f"{rule_query(rule)} > {number(threshold)}".split())
        assert rule["for"] == expected["for"]
        assert rule["labels"] == expected["labels"]
        assert rule["annotations"]["summary"] == expected["annotations"]["summary"]


def test_grafana_rule_thresholds_equal_thresholds_and_the_panels_they_link_to():
    board = dashboard()
    panels = {panel["id"]: panel for panel in board["panels"]}
    expected = {"HighCPUUsage": (THRESHOLDS.cpu_percent, THRESHOLDS.cpu_for),
                "HighPredictionLatency": (THRESHOLDS.latency_seconds, THRESHOLDS.latency_for),
                "HighPredictionFailureRate": (THRESHOLDS.failure_ratio, THRESHOLDS.failure_for)}
    for rule in grafana_rules():
        assert (rule_threshold(rule), rule["for"]) == expected[rule["title"]]
        assert rule["dashboardUid"] == board["uid"]
        assert red_from(panels[rule["panelId"]]) == rule_threshold(rule), rule["title"]


def test_grafana_rules_have_the_fields_grafana_requires():
    [group] = load_yaml(REPO / grafana.ALERT_RULES_FILE)["groups"]
    assert group["name"] and group["folder"] and group["orgId"] == 1
    interval = duration_seconds(group["interval"])
    assert interval % 10 == 0, "Grafana schedules rules in 10 s steps"
    known = set(provisioned_datasources()) | {"__expr__"}
    uids = [rule["uid"] for rule in group["rules"]]
    assert len(uids) == len(set(uids))
    for rule in group["rules"]:
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", rule["uid"]), rule["uid"]
        refs = [data["refId"] for data in rule["data"]]
        assert rule["condition"] in refs and len(refs) == len(set(refs))
        for data in rule["data"]:
            assert data["datasourceUid"] in known and data["model"]["refId"] == data["refId"]
            if data["datasourceUid"] == "__expr__":
                assert data["model"]["expression"] in refs and data["model"]["type"] in ("reduce", "threshold")
        assert rule["noDataState"] in ("NoData", "Alerting", "OK")
        assert rule["execErrState"] in ("Error", "Alerting", "OK")
        assert duration_seconds(rule["for"]) % interval == 0, "for should be a whole number of evaluations"
        assert rule["isPaused"] is False


def duration_seconds(text: str) -> int:
    value, unit = re.fullmatch(r"(\d+)([smh])", text).groups()
    return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_grafana_rules_read_no_environment_variable():
    """Grafana expands $VAR in provisioned labels and ${VAR} in annotations: neither may appear."""
    for rule in grafana_rules():
        assert not any("$" in value for value in rule["labels"].values()), rule["title"]
        assert not any("${" in value for value in rule["annotations"].values()), rule["title"]


def test_the_contact_point_emails_the_addresses_from_the_environment():
    [point] = load_yaml(REPO / grafana.CONTACT_POINTS_FILE)["contactPoints"]
    [receiver] = point["receivers"]
    assert receiver["type"] == "email" and receiver["uid"]
    assert receiver["settings"]["addresses"] == "${INFERWATCH_ALERT_EMAIL_TO}"
    assert "@" not in (REPO / grafana.CONTACT_POINTS_FILE).read_text(), "no address is committed"


def test_the_policy_groups_by_alertname_and_model_with_alertmanagers_timings():
    [policy] = load_yaml(REPO / grafana.POLICIES_FILE)["policies"]
    [point] = load_yaml(REPO / grafana.CONTACT_POINTS_FILE)["contactPoints"]
    assert policy["receiver"] == point["name"]
    assert policy["group_by"] == ["alertname", "job", "model", "model_version"] == load_yaml(REPO / "observability/alertmanager/alertmanager.yml")["route"]["group_by"]
    timings = (policy["group_wait"], policy["group_interval"], policy["repeat_interval"])
    assert timings == ("30s", "5m", "4h") == (RouteTimings().group_wait, RouteTimings().group_interval,
                                              RouteTimings().repeat_interval)
    route = load_yaml(REPO / "observability/alertmanager/alertmanager.yml")["route"]
    assert timings == (route["group_wait"], route["group_interval"], route["repeat_interval"])


# ---------------------------------------------------------------------------------------------
# grafana.ini and the compose service
# ---------------------------------------------------------------------------------------------


def grafana_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(GRAFANA_INI.read_text())
    return parser


def test_the_admin_password_comes_from_the_environment_and_anonymous_access_is_off():
    ini = grafana_ini()
    assert ini["security"]["admin_password"] == "$__env{GRAFANA_ADMIN_PASSWORD}"
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["users"]["allow_sign_up"] == "false"


def test_smtp_settings_come_from_the_same_environment_as_alertmanagers():
    smtp = grafana_ini()["smtp"]
    assert smtp["enabled"] == "true"
    assert {key: smtp[key] for key in ("host", "user", "password", "from_address")} == {
        "host": "$__env{INFERWATCH_SMTP_SMARTHOST}",
        "user": "$__env{INFERWATCH_SMTP_USERNAME}",
        "password": "$__env{INFERWATCH_SMTP_PASSWORD}",
        "from_address": "$__env{INFERWATCH_SMTP_FROM}",
    }


def environment_grafana_reads() -> set[str]:
    from_ini = re.findall(r"\$__env\{(\w+)\}", GRAFANA_INI.read_text())
    from_provisioning = [name for path in PROVISIONING_FILES
                         for name in re.findall(r"\$\{(\w+)\}", path.read_text())]
    return set(from_ini) | set(from_provisioning)


def test_every_variable_grafana_reads_is_one_env_example_names():
    env_example = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
                   if "=" in line and not line.startswith("#")}
    assert environment_grafana_reads() <= env_example, environment_grafana_reads() - env_example


def test_a_compose_grafana_service_mounts_these_files_and_passes_every_variable_they_read():
    services = load_yaml(COMPOSE)["services"]
    if "grafana" not in services:
        return  # docker-compose.yml has no Grafana service yet; this test checks it once it has
    service = services["grafana"]
    volumes = {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}
    assert volumes[grafana.CONTAINER_CONFIG_FILE] == "./observability/grafana/grafana.ini"
    assert volumes[grafana.CONTAINER_DASHBOARDS_DIR] == "./observability/grafana/dashboards"
    provisioning = {target: source for target, source in volumes.items()
                    if target.startswith(grafana.CONTAINER_PROVISIONING_DIR)}
    assert provisioning, "no provisioning folder is mounted"
    for target, source in provisioning.items():
        assert source == "./observability/grafana/provisioning" + target[len(grafana.CONTAINER_PROVISIONING_DIR):]
    environment = service.get("environment", {})
    names = set(environment) if isinstance(environment, dict) else {e.split("=", 1)[0] for e in environment}
    assert environment_grafana_reads() <= names, environment_grafana_reads() - names


# ---------------------------------------------------------------------------------------------
# Live: every query against a real Prometheus scraping the real service after real traffic
# ---------------------------------------------------------------------------------------------


@dataclass
class LiveStack:
    proxy: Proxy  # in front of the demo classifier
    regressor: Proxy  # in front of a regressor: the regression panels have data too
    probabilities: Proxy  # in front of the demo classifier answering class probabilities: the estimate
    foreign: ForeignExporter
    prometheus: PrometheusServer
    queries: DashboardQueries
    genai: Proxy | None = None  # in front of a GenAI pyfunc: the GenAI row has data too


def start_live_proxy(upstream: str, model_dir: Path, workdir: Path) -> Proxy:
    return start_proxy_process(upstream, workdir, model_dir=str(model_dir), host_metrics_interval="0.5",
                               log_level="WARNING")


@pytest.fixture(scope="module")
def live(mlflow_server, demo_model, regressor_mlflow, regressor_model, demo_probability_mlflow,
         demo_probability_model, genai_mlflow, tmp_path_factory) -> LiveStack:
    """Proxies before the demo classifier, a regressor, the demo classifier answering class
    probabilities and a GenAI pyfunc, scraped directly as job fraud-model, beside another team's
    exporter of the same names; Prometheus (1 s scrapes, the committed rules) on all of them."""
    workdir = tmp_path_factory.mktemp("grafana-live")
    proxies: list[Proxy] = []
    foreign = ForeignExporter()
    prometheus = None
    try:
        proxies.append(start_live_proxy(mlflow_server.url, demo_model, workdir))
        proxies.append(start_live_proxy(regressor_mlflow.url, regressor_model, workdir))
        proxies.append(start_live_proxy(demo_probability_mlflow.url, demo_probability_model, workdir))
        proxies.append(start_live_proxy(genai_mlflow.url, genai_mlflow.model_dir, workdir))
        prometheus = start_prometheus([f"127.0.0.1:{p.port}" for p in proxies], workdir / "prometheus", foreign)
        stack = LiveStack(proxies[0], proxies[1], proxies[2], foreign, prometheus, DashboardQueries(prometheus),
                          proxies[3])
        send_traffic(stack)
        # The module runs for minutes; rate() over the test's 1m window needs traffic in it.
        stop = threading.Event()
        trickle = threading.Thread(target=keep_traffic_flowing, args=(stack, stop), daemon=True)
        trickle.start()
        yield stack
        stop.set()
        trickle.join(timeout=30)
    finally:
        if prometheus is not None:
            prometheus.stop()
        foreign.stop()
        for proxy in proxies:
            stop_proxy(proxy)


def start_prometheus(targets: list[str], workdir: Path, foreign: ForeignExporter) -> PrometheusServer:
    # The committed rules: the recording rules the panels read. Nothing here listens to alerts.
    return alerting_stack.start_prometheus(workdir, prometheus_test_config(
        targets, "rules/*.yml", None, job_name=LIVE_JOB, extra_jobs=[foreign.scrape_config]))


def send_traffic(stack: LiveStack) -> None:
    """Successes, bad input (400, a failure with a reason), unknown paths (404) and feedback; the
    foreign job fails slowly all the while.

    A series is born with its first request, and rate() cannot see the increase that created
    it: one request of each kind first, then the rest once Prometheus has scraped them.
    """
    proxy, prometheus = stack.proxy, stack.prometheus
    kinds = {
        "200": lambda: proxy.post(json=SEED_EXAMPLE),
        "400": lambda: proxy.post(data="{not json", headers={"Content-Type": "application/json"}),
        "404": lambda: proxy.session.get(proxy.url + "/no-such-path", timeout=10),
    }
    poll(lambda: prometheus.query(f'prediction_success_total{{job="{LIVE_JOB}"}}'), LIVE_TIMEOUT,
         "Prometheus to scrape the counters at 0")
    stack.foreign.fail(1)
    for status, send in kinds.items():
        assert send().status_code == int(status)
    poll(lambda: {r["metric"]["status"] for r in prometheus.query(f'http_requests_total{{job="{LIVE_JOB}"}}')}
         >= set(kinds) and prometheus.query(f'prediction_failure_total{{job="{ForeignExporter.JOB}"}} > 0'),
         LIVE_TIMEOUT, "Prometheus to scrape every status, and the foreign failure")
    for status, send in kinds.items():
        for _ in range(20 if status == "200" else 3):
            assert send().status_code == int(status)
    send_feedback(stack)
    stack.foreign.fail(100)


def keep_traffic_flowing(stack: LiveStack, stop: threading.Event, limit: int = 1200) -> None:
    """A prediction and its feedback on each proxy every second, until stopped (at most ``limit``)."""
    for _ in range(limit):
        if stop.wait(1.0):
            return
        try:
            send_feedback(stack)
        except (requests.RequestException, AssertionError):
            return  # a proxy stopped: the module is ending


# A row the demo classifier calls positive (the seed's example it calls negative).
POSITIVE_EXAMPLE = {"dataframe_split": {"columns": SEED_EXAMPLE["dataframe_split"]["columns"],
                                        "data": [[1.0, 1.5, 0.0, 0.5, 0.0, 1.2, 0.8, 1.0]]}}


def send_feedback(stack: LiveStack) -> None:
    """Predictions with their true labels, for the classifiers and the regressor; a chat cut off by
    its token limit, a completion, an embedding and a failing chat with ratings, for the GenAI model."""
    classifier = stack.proxy.post(json=SEED_EXAMPLE)
    assert stack.proxy.post("/feedback", json={"token": classifier.headers[TOKEN_HEADER],
                                               "label": 1}).status_code == 200
    for example, label in ((SEED_EXAMPLE, 1), (POSITIVE_EXAMPLE, 1), (POSITIVE_EXAMPLE, 0)):
        answer = stack.probabilities.post(json=example)
        assert answer.status_code == 200, answer.text
        assert stack.probabilities.post("/feedback", json={"token": answer.headers[TOKEN_HEADER],
                                                           "label": label}).status_code == 200
    row = {"dataframe_split": {"columns": ["Temperature", "Humidity", "Wind"], "data": [[0.1, 0.2, 0.3]]}}
    for label in (0.0, 1.0, 2.0):
        regression = stack.regressor.post(json=row)
        assert regression.status_code == 200, regression.text
        assert stack.regressor.post("/feedback", json={"token": regression.headers[TOKEN_HEADER],
                                                       "label": label}).status_code == 200
    if stack.genai is not None:
        for body, rating in [({"messages": [{"role": "user", "content": "tell me a long story"}], "max_tokens": 2},
                              {"rating": "up"}),
                             ({"prompt": "once upon a time"}, {"score": 2}), ({"input": "embed this"}, None)]:
            answer = stack.genai.post(json=body)
            assert answer.status_code == 200, answer.text
            if rating is not None:
                assert stack.genai.post("/feedback", json={"token": answer.headers[TOKEN_HEADER],
                                                           **rating}).status_code == 200
        assert stack.genai.post(json={"messages": [{"role": "user", "content": "x"}], "fail": True}).status_code == 400


@pytest.mark.slow
def test_every_dashboard_query_runs_and_returns_data_from_the_real_service(live):
    expressions = panel_expressions(dashboard())
    assert len(expressions) == 75
    assert live.queries.wait_for_data(expressions, LIVE_TIMEOUT) == {}


@pytest.mark.slow
def test_every_template_variable_lists_values_from_the_real_service_and_no_other_job(live):
    values = live.queries.resolve_variables()
    assert values["job"] == [LIVE_JOB], values
    # the classifiers' proxies, the regressor's and the GenAI model's
    assert values["instance"] == sorted(f"127.0.0.1:{p.port}" for p in (live.proxy, live.regressor,
                                                                        live.probabilities, live.genai)), values
    assert {"/predict", "unmatched"} <= set(values["route"]), values


@pytest.mark.slow
def test_no_panel_shows_the_other_jobs_same_named_series(live):
    """The foreign job exports the same names (all failing, slow, CPU at 99 %) and is scraped."""
    expressions = panel_expressions(dashboard())
    assert live.queries.wait_for_data(expressions, LIVE_TIMEOUT) == {}
    assert live.prometheus.query(f'rate(prediction_failure_total{{job="{ForeignExporter.JOB}"}}[1m]) > 0')
    assert live.prometheus.query(f'system_cpu_usage{{job="{ForeignExporter.JOB}"}}')
    for where, expr in expressions:
        assert live.queries.jobs_shown(expr) == {LIVE_JOB}, where
    for where, expr in [(rule["title"], rule_query(rule)) for rule in grafana_rules()]:
        assert live.queries.jobs_shown(expr) <= {LIVE_JOB}, where


@pytest.mark.slow
def test_every_grafana_rule_query_runs_and_returns_data_from_the_real_service(live):
    expressions = [(rule["title"], rule_query(rule)) for rule in grafana_rules()]
    assert live.queries.wait_for_data(expressions, LIVE_TIMEOUT) == {}


def contract_metrics_in(expressions: list[tuple[str, str]]) -> list[str]:
    names = {mapping.prometheus_name for mapping in MAPPINGS}
    return sorted({name for _, expr in expressions for name in names if re.search(rf"\b{name}(_bucket)?\b", expr)})


@pytest.mark.slow
@pytest.mark.parametrize("metric", contract_metrics_in(panel_expressions(dashboard())))
def test_a_renamed_metric_makes_the_check_report_no_data(live, metric):
    """The check above would fail if a metric were renamed: every query reading it finds nothing."""
    reading = [(where, expr) for where, expr in panel_expressions(dashboard())
               if re.search(rf"\b{metric}(_bucket)?\b", expr)]
    assert live.queries.wait_for_data(reading, LIVE_TIMEOUT) == {}  # the original queries answer ...
    for where, expr in reading:
        renamed = re.sub(rf"\b{metric}(?=(_bucket)?\b)", f"{metric}_renamed", expr)
        assert live.queries.problem(renamed) == "no data", where  # ... the renamed ones do not
