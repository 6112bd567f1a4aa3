"""The proxy's OpenTelemetry resource: a readable, stable service.instance.id, and the marker.

``service.instance.id`` becomes the ``instance`` label through the collector: it defaults to the
host name and port (the pod name on Kubernetes), the same after a restart, so a restart continues
the same series; ``OTEL_RESOURCE_ATTRIBUTES`` replaces it. ``telemetry.distro.name=inferwatch`` is
the marker the rules and dashboards recognise inferwatch's series by, and cannot be replaced.
"""

from __future__ import annotations

import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.proxy.telemetry import build_resource
from inferwatch.stack.processes import free_port
from support import start_proxy_process, stop_proxy

VARIABLES = ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "K8S_POD_NAME", "INFERWATCH_PORT")


@pytest.fixture
def environ(monkeypatch):
    """A clean slate for the variables the resource reads; returns monkeypatch.setenv."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch.setenv


def attributes() -> dict:
    return dict(build_resource().attributes)


def test_the_instance_is_the_host_name_and_port_and_the_same_on_every_start(environ):
    environ("INFERWATCH_PORT", "8123")
    first = attributes()
    assert first["service.instance.id"] == f"{socket.gethostname()}:8123"
    assert attributes()["service.instance.id"] == first["service.instance.id"]


def test_without_a_port_setting_the_instance_names_the_default_port(environ):
    assert attributes()["service.instance.id"] == f"{socket.gethostname()}:8000"


def test_on_kubernetes_the_instance_is_the_pod_name_from_the_environment(environ):
    environ("K8S_POD_NAME", "fraud-model-7d9f8c-x2k4q")
    environ("INFERWATCH_PORT", "8000")
    assert attributes()["service.instance.id"] == "fraud-model-7d9f8c-x2k4q"


def test_otel_resource_attributes_replace_the_instance_and_the_service_name(environ):
    environ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=blue-1,service.name=fraud-model,deployment.environment=prod")
    found = attributes()
    assert (found["service.instance.id"], found["service.name"], found["deployment.environment"]) == (
        "blue-1", "fraud-model", "prod")


def test_otel_service_name_names_the_service_and_beats_the_resource_attributes(environ):
    environ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    environ("OTEL_SERVICE_NAME", "churn-model")
    assert attributes()["service.name"] == "churn-model"


def test_the_default_service_name_is_inferwatch(environ):
    assert attributes()["service.name"] == "inferwatch"


def test_the_marker_is_always_inferwatchs(environ):
    environ("OTEL_RESOURCE_ATTRIBUTES", "telemetry.distro.name=something-else")
    assert attributes()["telemetry.distro.name"] == "inferwatch"


def target_info(url: str) -> dict[str, str]:
    families = text_string_to_metric_families(requests.get(url + "/metrics", timeout=10).text)
    [sample] = [s for family in families if family.name == "target_info" for s in family.samples]
    return sample.labels


def test_a_restarted_proxy_reports_the_same_readable_instance_and_the_marker(tmp_path):
    port = free_port()
    # /healthz and /metrics answer without a model server behind the proxy.
    no_model = f"http://127.0.0.1:{free_port()}"
    seen = []
    for _ in range(2):
        proxy = start_proxy_process(no_model, tmp_path, port=port, env={"OTEL_SERVICE_NAME": "fraud-model"})
        try:
            seen.append(target_info(proxy.url))
        finally:
            stop_proxy(proxy)
    assert seen[0]["service_instance_id"] == seen[1]["service_instance_id"] == f"{socket.gethostname()}:{port}"
    assert seen[0]["service_name"] == "fraud-model"
    assert seen[0]["telemetry_distro_name"] == seen[1]["telemetry_distro_name"] == "inferwatch"
