"""Fixtures that start the real components: an MLflow model server on the demo model, and proxies.

Every server listens on 127.0.0.1 on a port picked here, logs to the test's temp directory, and
is stopped at teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import mlflow_models
from inferwatch.stack.demo_model import save_demo_model
from inferwatch.stack.processes import (
    CollectorPorts,
    JaegerPorts,
    ManagedProcess,
    build_collector,
    build_jaeger,
    collector_command,
    collector_env,
    free_port,
    jaeger_command,
    jaeger_env,
    mlflow_serve_command,
)
from inferwatch.stack.traces import JaegerQuery

VENV_BIN = str(Path(sys.executable).parent)
TESTS = Path(__file__).parent
ROOT = TESTS.parent
MLFLOW_START_TIMEOUT = 120.0


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the venv first on PATH (mlflow execs uvicorn)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INFERWATCH_"))}
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "service"), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class MlflowServer:
    model_dir: Path
    port: int
    log_path: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        self.process = ManagedProcess(
            "mlflow", mlflow_serve_command(self.model_dir, self.port), self.log_path, env=child_env()
        ).start()
        self.process.wait_ready(self.url + "/ping", timeout=MLFLOW_START_TIMEOUT)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


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
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    directory = tmp_path_factory.mktemp("tunable") / "model"
    signature = infer_signature(pd.DataFrame({"x": [1.0]}), [0], params={"delay_s": 0.0, "fail": False, "answer_bytes": 0})
    mlflow.pyfunc.save_model(str(directory), python_model=str(TESTS / "models" / "tunable_model.py"), signature=signature)
    server = MlflowServer(directory, free_port(), directory.parent / "mlflow.log").start()
    yield server
    server.stop()


REGRESSOR_COLUMNS = ("Temperature", "Humidity", "Wind")
REGRESSOR_NAME, REGRESSOR_VERSION = "demand-regressor", "3"


def regressor_training_data(rows: int = 600, seed: int = 7):
    """Standardized features and a linear target with noise (deterministic)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, len(REGRESSOR_COLUMNS)))
    target = features @ np.array([2.0, -1.0, 0.5]) + rng.normal(0.0, 0.3, rows)
    return pd.DataFrame(features, columns=list(REGRESSOR_COLUMNS)), target


@pytest.fixture(scope="session")
def regressor_model(tmp_path_factory) -> Path:
    """A small sklearn LinearRegression saved with mlflow.sklearn, its profile beside it."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from inferwatch.contract.profile import PROFILE_FILE_NAME, write_profile
    from inferwatch.stack.profile import build_profile, read_signature

    features, target = regressor_training_data()
    model = LinearRegression().fit(features, target)
    directory = tmp_path_factory.mktemp("regressor") / "model"
    mlflow.sklearn.save_model(model, str(directory), signature=infer_signature(features, model.predict(features)))
    profile = build_profile(features, model.predict(features).tolist(), signature=read_signature(directory),
                            model={"name": REGRESSOR_NAME, "version": REGRESSOR_VERSION})
    write_profile(profile, directory / PROFILE_FILE_NAME)
    return directory


@pytest.fixture(scope="session")
def regressor_mlflow(regressor_model) -> Iterator[MlflowServer]:
    server = MlflowServer(regressor_model, free_port(), regressor_model.parent / "mlflow.log").start()
    yield server
    server.stop()


def _served(save, tmp_path_factory, name: str) -> Iterator[MlflowServer]:
    directory = save(tmp_path_factory.mktemp(name) / "model")
    server = MlflowServer(directory, free_port(), directory.parent / "mlflow.log").start()
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
    server = MlflowServer(probability_model, free_port(), probability_model.parent / "mlflow.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_probability_model(tmp_path_factory) -> Path:
    """The demo model answering predict_proba, calibrated on labelled reference rows."""
    return save_demo_model(tmp_path_factory.mktemp("models") / "demo-probabilities", probabilities=True)


@pytest.fixture(scope="session")
def demo_probability_mlflow(demo_probability_model) -> Iterator[MlflowServer]:
    server = MlflowServer(demo_probability_model, free_port(), demo_probability_model.parent / "mlflow.log").start()
    yield server
    server.stop()


def tunable_payload(rows: int = 1, **params) -> dict:
    """A request for the tunable model: ``delay_s`` makes it slow, ``fail=True`` makes it raise,
    ``answer_bytes`` makes its answer that large."""
    return {"dataframe_split": {"columns": ["x"], "data": [[1.0]] * rows}, "params": params}


@dataclass
class Proxy:
    """A running ``inferwatch serve`` process."""

    port: int
    process: ManagedProcess
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str = "/predict", **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kwargs)

    def metrics_text(self) -> str:
        response = requests.get(self.url + "/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample on /metrics as {(name, sorted labels): value}."""
        return parse_samples(self.metrics_text())

    def log_lines(self) -> list[str]:
        return self.process.log_path.read_text().splitlines()


def parse_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and labels.items() <= dict(sample_labels).items()
    )


@pytest.fixture
def start_proxy(tmp_path) -> Iterator:
    """Start proxies for this test: ``start_proxy(upstream_url, env={...}, read_timeout=1, ...)``."""
    started: list[Proxy] = []

    def start(upstream: str, env: dict[str, str] | None = None, **settings: str) -> Proxy:
        port = free_port()
        env = child_env(
            INFERWATCH_UPSTREAM=upstream,
            INFERWATCH_PORT=str(port),
            INFERWATCH_HOST_METRICS_INTERVAL="0.5",
            **{f"INFERWATCH_{key.upper()}": str(value) for key, value in settings.items()},
            **(env or {}),
        )
        process = ManagedProcess(
            "inferwatch", [sys.executable, "-m", "inferwatch", "serve"], tmp_path / f"proxy-{port}.log", env=env
        ).start()
        proxy = Proxy(port, process)
        started.append(proxy)
        process.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=30)
        return proxy

    yield start
    for proxy in started:
        proxy.session.close()
        proxy.process.stop()


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


@dataclass
class Collector:
    """A running collector with config.yaml, on ports picked for this test; traces go to
    ``jaeger`` when one is given, else to ``traces_file``."""

    binary: str
    workdir: Path
    ports: CollectorPorts = field(default_factory=CollectorPorts)
    process: ManagedProcess | None = None
    jaeger: JaegerPorts | None = None

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    @property
    def traces_file(self) -> Path:
        return self.workdir / "traces.jsonl"

    def start(self, **env: str) -> Collector:
        self.process = ManagedProcess(
            "otelcol", collector_command(self.binary), self.workdir / "otelcol.log",
            env=child_env(**collector_env(self.ports, self.traces_file, self.jaeger), **env),
        ).start()
        self.process.wait_ready(f"http://127.0.0.1:{self.ports.health}/", timeout=30)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics_text(self) -> str:
        response = requests.get(self.metrics_url, timeout=10)
        response.raise_for_status()
        return response.text


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


def otlp_env(collector: Collector, export_interval_ms: int = 300) -> dict[str, str]:
    """Environment that makes a proxy export traces and metrics to ``collector`` quickly."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
        "OTEL_METRIC_EXPORT_INTERVAL": str(export_interval_ms),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture(scope="session")
def jaeger_binary() -> str:
    """Jaeger v2 built from its Go module (observability/jaeger/build.sh, cached)."""
    try:
        return build_jaeger()
    except subprocess.CalledProcessError as error:
        raise AssertionError(f"the Jaeger build failed:\n{error.stderr}") from None


@dataclass
class Jaeger:
    """A running Jaeger (memory store, observability/jaeger/config.yaml) on ports picked for this test."""

    binary: str
    workdir: Path
    ports: JaegerPorts = field(default_factory=JaegerPorts)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return self.ports.query_url

    @property
    def query(self) -> JaegerQuery:
        return JaegerQuery(self.url)

    def start(self) -> Jaeger:
        self.process = ManagedProcess(
            "jaeger", jaeger_command(self.binary), self.workdir / "jaeger.log", env=child_env(**jaeger_env(self.ports)),
        ).start()
        self.process.wait_ready(self.ports.health_url, timeout=30)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


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
