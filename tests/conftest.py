"""Fixtures only; what they are built from lives in tests/support.py (and the alerting stack in
tests/alerting_stack.py), which is where test modules import helpers from.

Two kinds of proxy fixture:

- in process (``start_app``, ``app_proxy``, and its ``app``, ``client``, ``span_exporter``,
  ``metric_reader``): the Flask app built by ``create_app`` with in-memory telemetry, in front of
  a real MLflow model server. For app logic: validation, error shapes, counting, spans.
- processes (``start_proxy``, ``proxy``): ``inferwatch serve`` under uWSGI, for what only the edge
  shows: slow clients, body deadlines, large answers, workers, sockets, the process's own start.

Session fixtures start one real MLflow model server per model, on demand.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mlflow_models
from inferwatch.stack.demo_model import save_demo_model
from inferwatch.stack.processes import build_collector, build_jaeger, free_port
from support import (
    Collector,
    InProcessProxy,
    Jaeger,
    MlflowServer,
    Proxy,
    save_regressor_model,
    save_tunable_model,
    serve_model,
    start_proxy_process,
    stop_proxy,
)


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    return save_demo_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture(scope="session")
def mlflow_server(demo_model, tmp_path_factory) -> Iterator[MlflowServer]:
    logs = tmp_path_factory.mktemp("mlflow-logs")
    server = MlflowServer(demo_model, free_port(), logs / "mlflow.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tunable_mlflow(tmp_path_factory) -> Iterator[MlflowServer]:
    """A real MLflow model server whose model sleeps, raises or answers at length on request (see models/)."""
    server = serve_model(save_tunable_model(tmp_path_factory.mktemp("tunable") / "model"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def regressor_model(tmp_path_factory) -> Path:
    """A small sklearn LinearRegression saved with mlflow.sklearn, its profile beside it."""
    return save_regressor_model(tmp_path_factory.mktemp("regressor") / "model")


@pytest.fixture(scope="session")
def regressor_mlflow(regressor_model) -> Iterator[MlflowServer]:
    server = serve_model(regressor_model)
    yield server
    server.stop()


def _served(save, tmp_path_factory, name: str) -> Iterator[MlflowServer]:
    server = serve_model(save(tmp_path_factory.mktemp(name) / "model"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mixed_mlflow(tmp_path_factory) -> Iterator[MlflowServer]:
    """A scikit-learn pipeline on text (non-ASCII), integer, float and boolean columns, with its profile."""
    yield from _served(mlflow_models.save_mixed_model, tmp_path_factory, "mixed")


@pytest.fixture(scope="session")
def genai_mlflow(tmp_path_factory) -> Iterator[MlflowServer]:
    """A GenAI pyfunc from code answering chat, completion and embedding bodies (tests/models/genai_model.py)."""
    yield from _served(mlflow_models.save_genai_model, tmp_path_factory, "genai")


@pytest.fixture(scope="session")
def tensor_mlflow(tmp_path_factory) -> Iterator[MlflowServer]:
    """A pyfunc whose signature takes two named float tensors (tests/models/tensor_model.py)."""
    yield from _served(mlflow_models.save_tensor_model, tmp_path_factory, "tensor")


@pytest.fixture(scope="session")
def probability_model(tmp_path_factory) -> Path:
    """The overconfident classifier answering class probabilities, calibrated by ``inferwatch profile
    --labels`` (tests/models/probability_model.py)."""
    return mlflow_models.save_probability_model(tmp_path_factory.mktemp("probability") / "model")


@pytest.fixture(scope="session")
def probability_mlflow(probability_model) -> Iterator[MlflowServer]:
    server = serve_model(probability_model)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_probability_model(tmp_path_factory) -> Path:
    """The demo model answering predict_proba, calibrated on labelled reference rows."""
    return save_demo_model(tmp_path_factory.mktemp("models") / "demo-probabilities", probabilities=True)


@pytest.fixture(scope="session")
def demo_probability_mlflow(demo_probability_model) -> Iterator[MlflowServer]:
    server = serve_model(demo_probability_model)
    yield server
    server.stop()


@pytest.fixture
def start_app() -> Iterator:
    """Build in-process proxies for this test: ``start_app(upstream_url, read_timeout=1, ...)``
    (settings as ``start_proxy`` takes them; see support.InProcessProxy); closed at teardown."""
    started: list[InProcessProxy] = []

    def start(upstream: str, **settings: str) -> InProcessProxy:
        proxy = InProcessProxy.start(upstream, **settings)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


@pytest.fixture
def app_proxy(start_app, mlflow_server) -> InProcessProxy:
    """A fresh in-process proxy in front of the session's MLflow model server."""
    return start_app(mlflow_server.url)


@pytest.fixture
def app(app_proxy) -> Flask:
    """The in-process proxy's Flask app."""
    return app_proxy.app


@pytest.fixture
def client(app_proxy) -> FlaskClient:
    return app_proxy.client


@pytest.fixture
def span_exporter(app_proxy) -> InMemorySpanExporter:
    """The spans the in-process proxy finished."""
    return app_proxy.spans


@pytest.fixture
def metric_reader(app_proxy) -> InMemoryMetricReader:
    """The in-process proxy's metrics, read on demand (``metric_reader.get_metrics_data()``)."""
    return app_proxy.metric_reader


@pytest.fixture
def start_proxy(tmp_path) -> Iterator:
    """Start ``inferwatch serve`` processes for this test: ``start_proxy(upstream_url, env={...},
    read_timeout=1, ...)`` (see support.start_proxy_process); stopped at teardown.

    A test that also exports to a collector names ``start_collector`` first: fixtures are torn
    down in reverse, and a proxy stopped after its collector spends its exporters' 10 s retry
    flushing to nothing."""
    started: list[Proxy] = []

    def start(upstream: str, env: dict[str, str] | None = None, **settings: str) -> Proxy:
        proxy = start_proxy_process(upstream, tmp_path, env=env, **{"host_metrics_interval": "0.5", **settings})
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        stop_proxy(proxy)


@pytest.fixture
def proxy(start_proxy, mlflow_server) -> Proxy:
    """A fresh proxy in front of the session's MLflow model server."""
    return start_proxy(mlflow_server.url)


@pytest.fixture(scope="session")
def otelcol_binary() -> str:
    """The collector built from otel-collector/builder-config.yaml (cached by the manifest's hash)."""
    try:
        return build_collector()
    except subprocess.CalledProcessError as error:
        raise AssertionError(f"the collector build failed:\n{error.stderr}") from None


@pytest.fixture
def start_collector(otelcol_binary, tmp_path) -> Iterator:
    """Start collectors for this test: ``start_collector(jaeger=None, OTELCOL_...="...")``."""
    started: list[Collector] = []

    def start(jaeger: Jaeger | None = None, **env: str) -> Collector:
        collector = Collector(otelcol_binary, tmp_path / f"otelcol-{len(started)}",
                              jaeger=jaeger.ports if jaeger is not None else None)
        collector.workdir.mkdir()
        started.append(collector.start(**env))
        return collector

    yield start
    for collector in started:
        collector.stop()


@pytest.fixture(scope="session")
def jaeger_binary() -> str:
    """Jaeger v2 built from its Go module (observability/jaeger/build.sh, cached)."""
    try:
        return build_jaeger()
    except subprocess.CalledProcessError as error:
        raise AssertionError(f"the Jaeger build failed:\n{error.stderr}") from None


@pytest.fixture
def start_jaeger(jaeger_binary, tmp_path) -> Iterator:
    """Start a Jaeger for this test: ``start_jaeger()``."""
    started: list[Jaeger] = []

    def start() -> Jaeger:
        jaeger = Jaeger(jaeger_binary, tmp_path / f"jaeger-{len(started)}")
        jaeger.workdir.mkdir()
        started.append(jaeger.start())
        return jaeger

    yield start
    for jaeger in started:
        jaeger.stop()


@pytest.fixture
def tiny_filesystem(tmp_path) -> Iterator:
    """``tiny_filesystem(kib)``: a real tmpfs of that size mounted for this test (a disk that fills
    up); unmounted at teardown, after whatever wrote to it has stopped. The tests run as root."""
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        point = tmp_path / f"tiny-{len(mounted)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0755", "tmpfs", str(point)],
                       check=True, capture_output=True)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(point)], check=False, capture_output=True)
