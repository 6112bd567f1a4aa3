"""The Helm chart (observability/kubernetes/inferwatch), validated where no cluster runs.

Every values file in the chart's ``ci/`` (the layouts users run: sidecar, separate Deployment
with several workers, Prometheus scraping the proxies, no collector) is linted and rendered by
Helm built from its Go module, and every rendered object is checked strictly against the OpenAPI
schema of Kubernetes v1.34.2 and the Prometheus Operator's CRDs. The monitoring objects carry the
committed files: the PrometheusRule's groups are the rule files', the dashboard ConfigMap holds
the committed dashboards, the collector's ConfigMap is otel-collector/config.yaml, and the
environment the chart gives the collector and the proxy is run through the real collector's
``validate`` and the real proxy. Nothing here reaches an API server, a kubelet or an image.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from inferwatch import __version__
from inferwatch.proxy.config import PARSERS, env_name, load_settings
from inferwatch.render import kubernetes
from inferwatch.render.collector import COLLECTOR_CONFIG
from inferwatch.render.grafana import DASHBOARD_FILE
from inferwatch.render.prometheus_rules import RULES_DIR
from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from kubernetes_schemas import KUBERNETES_VERSION, helm, helm_template, validate
from support import ROOT, child_env, otlp_env, parse_samples, start_proxy_process, stop_proxy, total
from test_collector import wait_for

CHART = ROOT / kubernetes.CHART_DIR
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))
MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")
# What the downward API would give a pod, for resolving the rendered environment.
POD_FIELDS = {"metadata.name": "fraud-model-7d9f8c-x2k4q", "metadata.namespace": "models",
              "spec.nodeName": "node-1"}
IMAGES = ("--set", "proxy.image.repository=r/proxy", "--set", "collector.image.repository=r/otelcol",
          "--set", "model.image.repository=r/model")


def render(values_file: Path | None = None, *args: str) -> list[dict]:
    files = ("-f", str(values_file)) if values_file else ()
    return helm_template(CHART, *files, *MONITORING_API, *args)


@pytest.fixture(scope="module", params=VALUES_FILES, ids=lambda path: path.stem)
def rendered(request) -> tuple[Path, list[dict]]:
    return request.param, render(request.param)


def values_of(values_file: Path) -> dict:
    return yaml.safe_load(values_file.read_text())


def the(objects: list[dict], kind: str, component: str | None = None) -> dict:
    [found] = of_kind(objects, kind, component)
    return found


def of_kind(objects: list[dict], kind: str, component: str | None = None) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind and (
        component is None or obj["metadata"]["labels"].get("app.kubernetes.io/component") == component)]


def containers(objects: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    for obj in of_kind(objects, "Deployment"):
        pod = obj["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield obj["metadata"]["name"], pod, container


def container(objects: list[dict], component: str, name: str) -> dict:
    pod = the(objects, "Deployment", component)["spec"]["template"]["spec"]
    [found] = [c for c in pod["containers"] if c["name"] == name]
    return found


def environment(container_spec: dict) -> dict[str, str]:
    """The container's environment as the kubelet would set it: downward-API fields filled in
    from POD_FIELDS, $(NAME) replaced by the variables defined before it."""
    env: dict[str, str] = {}
    for variable in container_spec.get("env", []):
        if "valueFrom" in variable:
            env[variable["name"]] = POD_FIELDS[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), variable["value"])
    return env


def test_the_chart_deploys_this_inferwatch_release():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda path: path.stem)
def test_the_chart_lints_strictly_with_each_values_file(values_file):
    # lint has no --api-versions: the monitoring objects are checked by the rendering tests below.
    helm("lint", "--strict", CHART, "-f", values_file, "--kube-version", KUBERNETES_VERSION)


def test_every_rendered_object_is_valid_for_kubernetes_and_the_prometheus_operator(rendered):
    _, objects = rendered
    assert validate(objects) == []


EXPECTED_KINDS = {
    "sidecar-values": ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget",
                       "PrometheusRule", "Service", "Service", "ServiceAccount", "ServiceMonitor"],
    "separate-values": ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler",
                        "PodDisruptionBudget", "PrometheusRule", "Service", "Service", "ServiceAccount",
                        "ServiceMonitor"],
    "scrape-proxies-values": ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget",
                              "PodMonitor", "PrometheusRule", "Service", "Service", "ServiceAccount"],
    "no-collector-values": ["Deployment", "PodMonitor", "PrometheusRule", "Service"],
}


def test_each_layout_renders_the_objects_it_needs_and_no_secret(rendered):
    values_file, objects = rendered
    assert sorted(obj["kind"] for obj in objects) == EXPECTED_KINDS[values_file.stem]


def committed_groups() -> list[dict]:
    groups = []
    for path in sorted((ROOT / RULES_DIR).glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def test_the_prometheus_rule_holds_exactly_the_committed_rule_groups(rendered):
    _, objects = rendered
    groups = the(objects, "PrometheusRule")["spec"]["groups"]
    assert groups == committed_groups()
    assert {group["name"] for group in groups} >= {
        "inferwatch.availability", "inferwatch.host", "inferwatch.predictions", "inferwatch.recording"}


def test_the_dashboard_config_map_holds_the_committed_dashboards_under_the_sidecars_label():
    [config_map] = [obj for obj in render(CHART / "ci" / "sidecar-values.yaml")
                    if obj["metadata"]["name"].endswith("-dashboards")]
    committed = {path.name: path.read_text() for path in (ROOT / DASHBOARD_FILE.parent).glob("*.json")}
    assert config_map["data"] == committed
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"][DASHBOARD_FILE.name])["uid"] == "inferwatch-ml-model-service"


def test_the_dashboard_label_namespace_and_folder_are_values():
    [config_map] = [obj for obj in render(CHART / "ci" / "separate-values.yaml", "--set",
                                          "monitoring.grafanaDashboard.label=dashboards", "--set",
                                          "monitoring.grafanaDashboard.labelValue=inferwatch")
                    if obj["metadata"]["name"].endswith("-dashboards")]
    metadata = config_map["metadata"]
    assert (metadata["labels"]["dashboards"], metadata["namespace"], metadata["annotations"]) == (
        "inferwatch", "monitoring", {"grafana_folder": "inferwatch"})


def test_the_collector_runs_the_committed_config_with_endpoints_from_its_environment(rendered):
    values_file, objects = rendered
    if values_of(values_file).get("collector", {}).get("enabled") is False:
        assert of_kind(objects, "Deployment", "collector") == []
        return
    config = the(objects, "ConfigMap", "collector")["data"]["config.yaml"]
    assert config == (ROOT / COLLECTOR_CONFIG).read_text()
    env = environment(container(objects, "collector", "collector"))
    read_by_config = set(re.findall(r"\$\{env:(\w+)", config))
    assert set(env) <= read_by_config, "the chart sets a variable config.yaml never reads"
    assert {name: env[name] for name in env if name.endswith("_ENDPOINT") and name != "OTELCOL_TRACES_OTLP_ENDPOINT"} == {
        "OTELCOL_OTLP_GRPC_ENDPOINT": "0.0.0.0:4317", "OTELCOL_OTLP_HTTP_ENDPOINT": "0.0.0.0:4318",
        "OTELCOL_PROMETHEUS_ENDPOINT": "0.0.0.0:8889", "OTELCOL_HEALTH_ENDPOINT": "0.0.0.0:13133"}


def test_the_real_collector_accepts_the_charts_config_with_the_charts_environment(otelcol_binary, tmp_path):
    for values_file in VALUES_FILES:
        objects = render(values_file)
        if not of_kind(objects, "Deployment", "collector"):
            continue
        config = tmp_path / f"{values_file.stem}.yaml"
        config.write_text(the(objects, "ConfigMap", "collector")["data"]["config.yaml"])
        env = environment(container(objects, "collector", "collector"))
        done = subprocess.run([otelcol_binary, "validate", "--config", str(config)], capture_output=True,
                              text=True, timeout=60, env=child_env(**env))
        assert done.returncode == 0, f"{values_file.name}: {done.stderr}"


def test_the_real_collector_refuses_a_trace_exporter_its_config_does_not_have(otelcol_binary, tmp_path):
    objects = render(CHART / "ci" / "sidecar-values.yaml", "--set", "collector.traces.exporters=[otlp_grpc/jaeger]")
    config = tmp_path / "config.yaml"
    config.write_text(the(objects, "ConfigMap", "collector")["data"]["config.yaml"])
    done = subprocess.run([otelcol_binary, "validate", "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env=child_env(**environment(container(objects, "collector", "collector"))))
    assert done.returncode != 0 and "otlp_grpc/jaeger" in done.stderr


def test_the_proxys_environment_is_settings_the_proxy_accepts(rendered):
    values_file, objects = rendered
    env = environment(container(objects, "proxy", "proxy"))
    names = {env_name(field) for field in PARSERS}
    assert {name for name in env if name.startswith("INFERWATCH_")} <= names
    settings = load_settings({}, environ={k: v for k, v in env.items() if k != "INFERWATCH_METRICS_TOKEN_FILE"})
    values = values_of(values_file)
    assert settings.workers == values.get("proxy", {}).get("workers", 1)
    assert settings.upstream == values.get("upstream", {}).get("url", "http://127.0.0.1:5005")
    assert env["K8S_POD_NAME"] == POD_FIELDS["metadata.name"]
    assert env["OTEL_SERVICE_NAME"] == values.get("serviceName", "release-name-inferwatch")


def test_every_container_runs_as_non_root_on_a_read_only_root_with_limits(rendered):
    _, objects = rendered
    for deployment, pod, spec in containers(objects):
        where = f"{deployment}/{spec['name']}"
        context = spec["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert (context["runAsNonRoot"], context["readOnlyRootFilesystem"], context["allowPrivilegeEscalation"]) == (
            True, True, False), where
        assert context["runAsUser"] != 0 and context["capabilities"]["drop"] == ["ALL"], where
        assert "/tmp" in {mount["mountPath"] for mount in spec["volumeMounts"]}, f"{where}: nowhere to write"
        assert {"cpu", "memory"} <= set(spec["resources"]["requests"]), where
        assert "memory" in spec["resources"]["limits"], where
        assert pod["automountServiceAccountToken"] is False, where


def test_the_proxy_is_probed_on_healthz_and_readyz(rendered):
    values_file, objects = rendered
    proxy = container(objects, "proxy", "proxy")
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Separate: a model that is down is answered 503 and counted, not hidden by unready proxies.
    ready = "/healthz" if values_of(values_file).get("mode") == "separate" else "/readyz"
    assert proxy["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
    assert {port["name"]: port["containerPort"] for port in proxy["ports"]} == {"http": 8000, "metrics": 8001}


def test_readiness_can_wait_for_the_model_in_separate_mode_too():
    objects = render(CHART / "ci" / "separate-values.yaml", "--set", "proxy.readinessPath=/readyz")
    assert container(objects, "proxy", "proxy")["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_in_sidecar_mode_the_model_shares_the_pod_and_listens_on_loopback_only():
    objects = render(CHART / "ci" / "sidecar-values.yaml")
    model = container(objects, "proxy", "model")
    assert model["image"] == "registry.example.com/ml/fraud-model:2026-12-01"
    assert model["command"][:5] == ["mlflow", "models", "serve", "-m", "/models/fraud"]
    assert model["command"][model["command"].index("-h") + 1] == "127.0.0.1"
    assert "ports" not in model, "the model is reached through the proxy only"
    assert environment(container(objects, "proxy", "proxy"))["INFERWATCH_UPSTREAM"] == "http://127.0.0.1:5005"


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def test_services_monitors_budgets_and_autoscalers_select_the_right_pods(rendered):
    _, objects = rendered
    proxy_pods = the(objects, "Deployment", "proxy")["spec"]["template"]["metadata"]["labels"]
    service = the(objects, "Service", "proxy")
    assert selects(service["spec"]["selector"], proxy_pods)
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"], "/metrics stays off the Service"
    for budget in of_kind(objects, "PodDisruptionBudget"):
        assert selects(budget["spec"]["selector"]["matchLabels"], proxy_pods)
    for autoscaler in of_kind(objects, "HorizontalPodAutoscaler"):
        assert autoscaler["spec"]["scaleTargetRef"]["name"] == the(objects, "Deployment", "proxy")["metadata"]["name"]
        assert "replicas" not in the(objects, "Deployment", "proxy")["spec"]
    for monitor in of_kind(objects, "PodMonitor"):
        assert selects(monitor["spec"]["selector"]["matchLabels"], proxy_pods)
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "metrics"
        [job] = endpoint["relabelings"]
        assert job["targetLabel"] == "job"
        assert job["replacement"] == environment(container(objects, "proxy", "proxy"))["OTEL_SERVICE_NAME"]
    for monitor in of_kind(objects, "ServiceMonitor"):
        collector_service = the(objects, "Service", "collector")
        assert selects(monitor["spec"]["selector"]["matchLabels"], collector_service["metadata"]["labels"])
        assert not selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {port["name"] for port in collector_service["spec"]["ports"]}
        assert endpoint["honorLabels"] is True, "job and instance must stay the proxies'"


def test_secrets_are_referenced_never_rendered():
    objects = render(CHART / "ci" / "scrape-proxies-values.yaml")
    assert of_kind(objects, "Secret") == []
    pod = the(objects, "Deployment", "proxy")["spec"]["template"]["spec"]
    [token] = [volume for volume in pod["volumes"] if "secret" in volume]
    assert token["secret"]["secretName"] == "fraud-model-metrics-token"
    env = environment(container(objects, "proxy", "proxy"))
    assert env["INFERWATCH_METRICS_TOKEN_FILE"] == "/var/run/secrets/inferwatch/metrics-token/token"
    [endpoint] = the(objects, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "fraud-model-metrics-token",
                                                                          "key": "token"}}


def test_the_collector_is_one_replica_replaced_not_rolled():
    collector = the(render(CHART / "ci" / "separate-values.yaml"), "Deployment", "collector")
    assert (collector["spec"]["replicas"], collector["spec"]["strategy"]) == (1, {"type": "Recreate"})


def test_without_the_prometheus_operator_api_no_monitoring_object_is_rendered():
    objects = helm_template(CHART, "-f", str(CHART / "ci" / "sidecar-values.yaml"))
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"}.isdisjoint(obj["kind"] for obj in objects)
    assert len(of_kind(objects, "ConfigMap")) == 2  # the collector's and the dashboard's need no CRD


def test_a_typo_in_the_values_is_rejected_before_anything_renders():
    with pytest.raises(RuntimeError, match="additional properties 'replica' not allowed"):
        render(None, *IMAGES, "--set", "proxy.replica=3")
    with pytest.raises(RuntimeError, match="value must be one of"):
        render(None, *IMAGES, "--set", "mode=sidekick")


@pytest.mark.parametrize(("settings", "message"), [
    (("--set", "proxy.workers=2", "--set", "monitoring.scrape=proxy"), "at '/monitoring/scrape': value must be 'collector'"),
    (("--set", "collector.enabled=false"), "at '/monitoring/scrape': value must be one of 'proxy', 'none'"),
    (("--set", "mode=separate"), "at '/upstream/url': minLength: got 0, want 1"),
])
def test_combinations_that_would_make_totals_wrong_are_refused(settings, message):
    with pytest.raises(RuntimeError, match=re.escape(message)):
        render(None, *IMAGES, *settings)


def test_the_templates_refuse_several_workers_scraped_directly_even_without_the_schema():
    with pytest.raises(RuntimeError, match="each worker counts its own requests, and a scrape of one pod's /metrics"):
        render(None, *IMAGES, "--skip-schema-validation", "--set", "proxy.workers=2", "--set", "monitoring.scrape=proxy")


def test_an_image_left_unset_is_refused_with_what_to_set():
    with pytest.raises(RuntimeError, match=r"proxy\.image\.repository: set it to the registry path where you pushed"):
        render(None, "--set", "collector.image.repository=r/otelcol", "--set", "model.image.repository=r/model")


def test_the_charts_copies_follow_new_rule_groups_and_dashboards(tmp_path):
    rendered = {tmp_path / RULES_DIR / "slo.yml": "groups: []\n",
                tmp_path / DASHBOARD_FILE.parent / "drift.json": "{}\n",
                tmp_path / "observability/alertmanager/alertmanager.yml": "route: {}\n"}
    assert kubernetes.chart_copies(tmp_path, rendered) == {
        tmp_path / kubernetes.CHART_FILES / "prometheus-rules" / "slo.yml": "groups: []\n",
        tmp_path / kubernetes.CHART_FILES / "grafana-dashboards" / "drift.json": "{}\n"}


@pytest.mark.slow  # a collector and a proxy of four workers, as the chart runs them
def test_the_proxy_as_the_chart_configures_it_runs_four_workers_that_report_as_pod_and_worker(
        mlflow_server, start_collector, tmp_path):
    """The separate layout's proxy environment, run: only the addresses become this machine's."""
    objects = render(CHART / "ci" / "separate-values.yaml")
    env = environment(container(objects, "proxy", "proxy"))
    collector = start_collector()
    port, metrics_port = free_port(), free_port()
    env.update(INFERWATCH_UPSTREAM=mlflow_server.url, INFERWATCH_HOST="127.0.0.1", INFERWATCH_PORT=str(port),
               INFERWATCH_METRICS_HOST="127.0.0.1", INFERWATCH_METRICS_PORT=str(metrics_port),
               **otlp_env(collector))
    proxy = start_proxy_process(mlflow_server.url, tmp_path, port=port, env=env, ready_path="/readyz", timeout=60)
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.post(f"http://127.0.0.1:{port}/predict", json=SEED_EXAMPLE,
                                                             timeout=30).status_code, range(40)))
        assert statuses == [200] * 40
    finally:
        stop_proxy(proxy)
    samples = wait_for(lambda: (s := parse_samples(collector.metrics_text()))
                       and total(s, "prediction_success_total") == 40 and s, 20, what="40 successes")
    pod = POD_FIELDS["metadata.name"]
    instances = {dict(labels)["instance"] for (name, labels) in samples if name == "target_info"}
    assert instances == {f"{pod}/{worker}" for worker in range(1, 5)}
    infos = [dict(labels) for (name, labels) in samples if name == "target_info"]
    assert {(info["job"], info["k8s_namespace_name"], info["k8s_pod_name"]) for info in infos} == {
        ("churn-model", "models", pod)}
