"""The strict validator of rendered Kubernetes objects, and the Helm that renders them.

The objects here are the kinds the inferwatch chart will render. Each failure test names the exact
problem line, so a validator that stops looking (or looks at the wrong place) fails too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from kubernetes_schemas import KUBERNETES_VERSION, helm, helm_template, load_objects, schemas_dir, validate


def labels() -> dict:
    return {"app.kubernetes.io/name": "inferwatch", "app.kubernetes.io/instance": "demo"}


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "inferwatch", "labels": labels(),
                     "annotations": {"checksum/config": "abc"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels()},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "proxy",
                        "image": "inferwatch:0.1.0",
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["serve", "--port", "8000"],
                        "env": [{"name": "INFERWATCH_UPSTREAM_URL", "value": "http://mlflow:5005"}],
                        "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                           "periodSeconds": 5},
                        "livenessProbe": {"tcpSocket": {"port": 8000}, "initialDelaySeconds": 10},
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": 1, "memory": "256Mi"}},
                        "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                            "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def service() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "inferwatch", "labels": labels()},
        "spec": {"type": "ClusterIP", "selector": labels(),
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def pod_disruption_budget() -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "inferwatch"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": labels()}},
    }


def horizontal_pod_autoscaler() -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "inferwatch"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inferwatch"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }


def config_map() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferwatch-dashboards", "labels": {"grafana_dashboard": "1"}},
        "data": {"inferwatch.json": "{}"},
    }


def service_monitor() -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "inferwatch", "labels": labels()},
        "spec": {
            "selector": {"matchLabels": labels()},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s", "scheme": "http"}],
        },
    }


def prometheus_rule() -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "inferwatch", "labels": labels()},
        "spec": {"groups": [{
            "name": "inferwatch",
            "rules": [
                {"record": "job:http_requests:rate5m",
                 "expr": "sum by (job) (rate(http_requests_total[5m]))"},
                {"alert": "HighLatency", "expr": "histogram_quantile(0.95, ...) > 2", "for": "5m",
                 "labels": {"severity": "warning"}, "annotations": {"summary": "p95 latency above 2 s"}},
            ],
        }]},
    }


VALID_OBJECTS: dict[str, Callable[[], dict]] = {
    "Deployment": deployment,
    "Service": service,
    "PodDisruptionBudget": pod_disruption_budget,
    "HorizontalPodAutoscaler": horizontal_pod_autoscaler,
    "ConfigMap": config_map,
    "ServiceMonitor": service_monitor,
    "PrometheusRule": prometheus_rule,
}


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("kind", VALID_OBJECTS)
def test_a_valid_object_of_each_kind_the_chart_renders_has_no_problems(kind):
    assert validate([VALID_OBJECTS[kind]()]) == []


@pytest.mark.parametrize(("make", "edit", "problem"), [
    (deployment, lambda d: d.update(statuss={}), "Deployment/inferwatch: statuss: unknown field"),
    (deployment, lambda d: d["metadata"].update(label={}),
     "Deployment/inferwatch: metadata.label: unknown field"),
    (deployment, lambda d: d["spec"].update(replica=1), "Deployment/inferwatch: spec.replica: unknown field"),
    (deployment, lambda d: container(d).update(imagePullPolicyy="Always"),
     "Deployment/inferwatch: spec.template.spec.containers[0].imagePullPolicyy: unknown field"),
    (deployment, lambda d: container(d)["securityContext"].update(readOnlyRootFileSystem=True),
     "Deployment/inferwatch: spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem: "
     "unknown field"),
    (deployment, lambda d: container(d)["readinessProbe"]["httpGet"].update(paths="/"),
     "Deployment/inferwatch: spec.template.spec.containers[0].readinessProbe.httpGet.paths: unknown field"),
    (service_monitor, lambda s: s["spec"]["endpoints"][0].update(intervall="15s"),
     "ServiceMonitor/inferwatch: spec.endpoints[0].intervall: unknown field"),
    (service_monitor, lambda s: s["metadata"].update(lables={}),
     "ServiceMonitor/inferwatch: metadata.lables: unknown field"),
    (prometheus_rule, lambda r: r["spec"]["groups"][0]["rules"][1].update(annotation={}),
     "PrometheusRule/inferwatch: spec.groups[0].rules[1].annotation: unknown field"),
])
def test_an_unknown_field_at_any_depth_is_named_with_its_path(make, edit, problem):
    obj = make()
    edit(obj)
    assert validate([obj]) == [problem]


@pytest.mark.parametrize(("make", "edit", "problem"), [
    (deployment, lambda d: d["spec"].update(replicas="2"),
     "Deployment/inferwatch: spec.replicas: '2' is not of type integer"),
    (deployment, lambda d: container(d).update(args="serve"),
     "Deployment/inferwatch: spec.template.spec.containers[0].args: 'serve' is not of type array"),
    (deployment, lambda d: d["metadata"]["labels"].update(tier=1),
     'Deployment/inferwatch: metadata.labels.tier: 1 is not of type string'),
    (config_map, lambda c: c["data"].update(replicas=3),
     "ConfigMap/inferwatch-dashboards: data.replicas: 3 is not of type string"),
    (service_monitor, lambda s: s["spec"]["endpoints"][0].update(honorLabels="yes"),
     "ServiceMonitor/inferwatch: spec.endpoints[0].honorLabels: 'yes' is not of type boolean"),
    (deployment, lambda d: container(d).update(resources=None),
     "Deployment/inferwatch: spec.template.spec.containers[0].resources: None is not of type object"),
])
def test_a_value_of_the_wrong_type_is_a_problem(make, edit, problem):
    obj = make()
    edit(obj)
    assert validate([obj]) == [problem]


@pytest.mark.parametrize(("make", "edit", "problem"), [
    (deployment, lambda d: container(d).pop("name"),
     "Deployment/inferwatch: spec.template.spec.containers[0]: missing required field 'name'"),
    (deployment, lambda d: d["spec"].pop("selector"),
     "Deployment/inferwatch: spec: missing required field 'selector'"),
    (service_monitor, lambda s: s["spec"].pop("selector"),
     "ServiceMonitor/inferwatch: spec: missing required field 'selector'"),
    (prometheus_rule, lambda r: r["spec"]["groups"][0]["rules"][0].pop("expr"),
     "PrometheusRule/inferwatch: spec.groups[0].rules[0]: missing required field 'expr'"),
])
def test_a_missing_required_field_is_a_problem(make, edit, problem):
    obj = make()
    edit(obj)
    assert validate([obj]) == [problem]


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda s: s["spec"]["endpoints"][0].update(scheme="ftp"),
     "ServiceMonitor/inferwatch: spec.endpoints[0].scheme: 'ftp' is not one of ['http', 'https']"),
    (lambda s: s["spec"]["endpoints"][0].update(interval="15 seconds"),
     "ServiceMonitor/inferwatch: spec.endpoints[0].interval: '15 seconds' does not match"),
])
def test_a_value_outside_its_enum_or_pattern_is_a_problem(edit, problem):
    obj = service_monitor()
    edit(obj)
    [found] = validate([obj])
    assert found.startswith(problem)


@pytest.mark.parametrize(("api_version", "kind"), [
    ("apps/v1", "Deploymentt"),
    ("apps/v2", "Deployment"),
    ("monitoring.coreos.com/v2", "ServiceMonitor"),
    ("example.com/v1", "Widget"),
])
def test_an_apiversion_and_kind_outside_the_schemas_is_a_problem(api_version, kind):
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    assert validate([obj]) == [
        f"{kind}/x: {api_version} {kind} is not a kind known to Kubernetes v1.34.2 or the "
        "Prometheus Operator's CRDs"]


def test_an_object_without_apiversion_or_kind_is_a_problem():
    assert validate([{"kind": "ConfigMap", "metadata": {"name": "x"}}]) == [
        "ConfigMap/x: apiVersion and kind must both be set to strings"]


@pytest.mark.parametrize("port", [8000, "http"])
@pytest.mark.parametrize("min_available", [1, "50%"])
@pytest.mark.parametrize("cpu", [1, 0.5, "500m"])
def test_ports_and_budgets_may_be_numbers_or_names_and_quantities_numbers_or_strings(
        port, min_available, cpu):
    objects = [deployment(), pod_disruption_budget(), service(), service_monitor()]
    container(objects[0])["livenessProbe"]["tcpSocket"]["port"] = port
    container(objects[0])["resources"]["limits"]["cpu"] = cpu
    objects[1]["spec"]["minAvailable"] = min_available
    objects[2]["spec"]["ports"][0]["targetPort"] = port
    objects[3]["spec"]["endpoints"][0]["targetPort"] = port
    assert validate(objects) == []


def test_an_int_or_string_is_neither_a_fraction_nor_a_boolean():
    obj = service()
    obj["spec"]["ports"][0]["targetPort"] = 80.5
    obj["spec"]["ports"].append({"name": "other", "port": 81, "targetPort": True})
    assert validate([obj]) == [
        "Service/inferwatch: spec.ports[0].targetPort: 80.5 is not of type ['integer', 'string']",
        "Service/inferwatch: spec.ports[1].targetPort: True is not of type ['integer', 'string']",
    ]


def test_every_problem_of_every_object_is_reported():
    broken = deployment()
    broken["spec"]["replicas"] = "2"
    container(broken).pop("name")
    container(broken)["imagePullPolicyy"] = "Always"
    assert validate([service(), broken, service_monitor()]) == [
        "Deployment/inferwatch: spec.replicas: '2' is not of type integer",
        "Deployment/inferwatch: spec.template.spec.containers[0]: missing required field 'name'",
        "Deployment/inferwatch: spec.template.spec.containers[0].imagePullPolicyy: unknown field",
    ]


def test_a_multi_document_stream_loads_every_object_and_skips_empty_documents():
    stream = "---\n# Source: a.yaml\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n" \
             "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n"
    assert [obj["metadata"]["name"] for obj in load_objects(stream)] == ["a", "b"]


def test_validating_leaves_the_objects_unchanged():
    objects = [deployment(), service_monitor()]
    before = copy.deepcopy(objects)
    validate(objects)
    assert objects == before


def test_the_schemas_are_those_of_the_kubernetes_version_charts_are_rendered_for():
    assert schemas_dir().name.startswith(f"kubernetes-{KUBERNETES_VERSION}+")


def test_the_helm_built_here_reports_its_pinned_version():
    assert helm("version", "--short").startswith("v3.22.0")


@pytest.fixture
def created_chart(tmp_path):
    helm("create", "demo", cwd=tmp_path)
    return tmp_path / "demo"


def test_a_chart_from_helm_create_lints_renders_and_passes_validation(created_chart):
    helm("lint", "--strict", created_chart)
    objects = helm_template(created_chart,
                            "--set", "autoscaling.enabled=true", "--set", "ingress.enabled=true")
    assert sorted(obj["kind"] for obj in objects) == [
        "Deployment", "HorizontalPodAutoscaler", "Ingress", "Pod", "Service", "ServiceAccount"]
    assert validate(objects) == []


def test_charts_render_for_the_pinned_kubernetes_and_helm_alone_for_its_own_release(created_chart):
    (created_chart / "templates" / "kube-version.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-version\n"
        "data:\n  version: {{ .Capabilities.KubeVersion.Version | quote }}\n")
    only = ("--show-only", "templates/kube-version.yaml")
    [pinned] = helm_template(created_chart, *only)
    [default] = load_objects(helm("template", created_chart, *only))
    assert pinned["data"]["version"] == KUBERNETES_VERSION
    # A `go install` without the release's ldflags would say v1.20.0 here.
    assert default["data"]["version"] == "v1.37.0"


def test_a_typo_in_a_chart_template_is_caught_after_rendering(created_chart):
    template = created_chart / "templates" / "deployment.yaml"
    template.write_text(template.read_text().replace("imagePullPolicy:", "imagePullPolicyy:"))
    assert validate(helm_template(created_chart)) == [
        "Deployment/release-name-demo: spec.template.spec.containers[0].imagePullPolicyy: unknown field"]
