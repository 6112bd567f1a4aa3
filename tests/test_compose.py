"""docker-compose.yml: valid, and consistent with every config file it mounts or names.

No Docker engine runs here, so the file is validated by Debian's docker-compose (``config``
needs no engine) and cross-checked by reading it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ONE_SHOT = {"alertmanager-config", "demo-profile"}


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """The compose file as docker-compose resolves it, with .env.example and a test password."""
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("GRAFANA_ADMIN_PASSWORD=\n", "GRAFANA_ADMIN_PASSWORD=test-only\n"))
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose missing: scripts/system-deps.sh installs it"
    result = subprocess.run([binary, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_refuses_to_start_without_an_admin_password(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    assert "GRAFANA_ADMIN_PASSWORD=\n" in ENV_EXAMPLE.read_text(), "no password may be committed"
    result = subprocess.run(["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_every_variable_compose_reads_is_pinned_in_env_example():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert used <= set(env_example()), used - set(env_example())
    for key, value in env_example().items():
        if key.endswith("_IMAGE"):
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", value) and not value.endswith(":latest"), (key, value)


def test_every_host_port_binds_to_loopback(resolved):
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            host_ip = port["host_ip"] if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)


def test_every_long_running_service_has_a_healthcheck_a_memory_limit_and_healthy_dependencies():
    for name, service in raw()["services"].items():
        if name in ONE_SHOT:
            continue
        assert "healthcheck" in service or "HEALTHCHECK" in dockerfile_of(service), name
        assert "mem_limit" in service, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] in ("service_healthy", "service_completed_successfully", "service_started")
            if condition["condition"] == "service_started":
                assert dependency == "jaeger", f"{name} should wait for {dependency} to be healthy"


def dockerfile_of(service: dict) -> str:
    build = service.get("build")
    if not build:
        return ""
    return (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).read_text()


def test_every_mounted_file_exists():
    for name, service in raw()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).exists(), name


def test_images_run_as_a_non_root_user():
    for dockerfile in (ROOT / "service" / "Dockerfile", ROOT / "otel-collector" / "Dockerfile"):
        users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.M)
        assert users and all(not user.startswith(("root", "0")) for user in users), dockerfile


def container_port(service: dict, host_variable: str) -> int:
    for port in service["ports"]:
        if host_variable in port:
            return int(port.rsplit(":", 1)[1])
    raise AssertionError(f"no port published from {host_variable}")


def test_ports_agree_with_the_configs_that_use_them():
    services = raw()["services"]
    proxy_env = services["inferwatch"]["environment"]
    assert container_port(services["inferwatch"], "INFERWATCH_PORT") == int(proxy_env["INFERWATCH_PORT"])
    assert proxy_env["INFERWATCH_UPSTREAM"] == f"http://mlflow:{container_port(services['mlflow'], 'MLFLOW_PORT')}"
    assert '"-p", "5005"' in dockerfile_of(services["mlflow"])

    collector = yaml.safe_load((ROOT / "otel-collector" / "config.yaml").read_text())
    default_port = lambda text: int(re.search(r":-[^}]*:(\d+)}", text).group(1))  # noqa: E731
    otlp_http = default_port(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    otlp_grpc = default_port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    exporter = default_port(collector["exporters"]["prometheus/contract"]["endpoint"])
    assert proxy_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{otlp_http}"
    assert container_port(services["otel-collector"], "OTLP_HTTP_PORT") == otlp_http
    assert container_port(services["otel-collector"], "OTLP_GRPC_PORT") == otlp_grpc
    assert container_port(services["otel-collector"], "COLLECTOR_METRICS_PORT") == exporter

    prometheus = yaml.safe_load((ROOT / "observability" / "prometheus" / "prometheus.compose.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == [f"otel-collector:{exporter}"]
    alertmanager_port = container_port(services["alertmanager"], "ALERTMANAGER_PORT")
    assert f"--web.listen-address=:{alertmanager_port}" in services["alertmanager"]["command"]
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [f"alertmanager:{alertmanager_port}"]
    assert container_port(services["prometheus"], "PROMETHEUS_PORT") == 9090
    assert "--web.listen-address=:9090" in services["prometheus"]["command"]
    assert services["otel-collector"]["environment"]["OTELCOL_TRACES_OTLP_ENDPOINT"] == "jaeger:4317"


def test_the_compose_prometheus_config_differs_from_the_native_one_only_in_targets():
    def without_targets(path: Path) -> dict:
        config = yaml.safe_load(path.read_text())
        for scrape in config["scrape_configs"]:
            for static in scrape["static_configs"]:
                static["targets"] = ["*"]
        for manager in config["alerting"]["alertmanagers"]:
            for static in manager["static_configs"]:
                static["targets"] = ["*"]
        return config

    folder = ROOT / "observability" / "prometheus"
    assert without_targets(folder / "prometheus.compose.yml") == without_targets(folder / "prometheus.yml")


def build_script_value(script: str, name: str) -> str:
    """A ``name=value`` assignment of a build script under observability/."""
    [value] = re.findall(rf"^{name}=(\S+)$", (ROOT / "observability" / script).read_text(), re.M)
    return value


def test_prometheus_alertmanager_and_jaeger_images_are_the_releases_the_native_stack_builds():
    images = env_example()
    assert images["PROMETHEUS_IMAGE"] == f"prom/prometheus:v{build_script_value('prometheus/build.sh', 'version')}"
    assert images["ALERTMANAGER_IMAGE"] == f"prom/alertmanager:v{build_script_value('alertmanager/build.sh', 'version')}"
    # Jaeger tags each release twice: v1.N of the Go module is Jaeger 2.(N-63) (v1.63.0 was
    # 2.0.0, v1.76.0 is 2.13.0), the v2 line being what its image is tagged with.
    go_mod = (ROOT / "observability" / "jaeger" / "build" / "go.mod").read_text()
    [(minor, patch)] = re.findall(r"^\tgithub\.com/jaegertracing/jaeger v1\.(\d+)\.(\d+)\b", go_mod, re.M)
    assert images["JAEGER_IMAGE"] == f"jaegertracing/jaeger:2.{int(minor) - 63}.{patch}"


def test_compose_runs_prometheus_with_the_feature_flags_the_tests_and_the_native_stack_use():
    from inferwatch.stack.processes import PROMETHEUS_FEATURES

    assert PROMETHEUS_FEATURES in raw()["services"]["prometheus"]["command"]
