"""What the tests share that is not a fixture: the real components they start (MLflow model
servers, the proxy, the collector, Jaeger), the one proxy starter, and the helpers that read what
those components say (Prometheus text, the tunable model's requests).

tests/conftest.py holds the fixtures and builds them from here; test modules import from here
(``from support import ...``), never from conftest. The alerting stack (Prometheus, Alertmanager,
an SMTP sink) has its own builder in tests/alerting_stack.py.

Every server listens on 127.0.0.1 on a port picked here, logs to the test's temp directory, and
is stopped by whoever started it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import TestResponse

from inferwatch.stack.processes import (
    CollectorPorts,
    JaegerPorts,
    ManagedProcess,
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
PROXY_START_TIMEOUT = 30.0


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



def serve_model(directory: Path) -> MlflowServer:
    """A started ``mlflow models serve`` on the model saved in ``directory``, logging beside it."""
    return MlflowServer(directory, free_port(), directory.parent / "mlflow.log").start()


def save_tunable_model(directory: Path) -> Path:
    """The model in tests/models/tunable_model.py, saved to ``directory`` (see tunable_payload)."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    signature = infer_signature(pd.DataFrame({"x": [1.0]}), [0], params={"delay_s": 0.0, "fail": False, "answer_bytes": 0})
    mlflow.pyfunc.save_model(str(directory), python_model=str(TESTS / "models" / "tunable_model.py"), signature=signature)
    return directory


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



def save_regressor_model(directory: Path) -> Path:
    """A small sklearn LinearRegression saved with mlflow.sklearn, its profile beside it."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from inferwatch.contract.profile import PROFILE_FILE_NAME, write_profile
    from inferwatch.stack.profile import build_profile, read_signature

    features, target = regressor_training_data()
    model = LinearRegression().fit(features, target)
    mlflow.sklearn.save_model(model, str(directory), signature=infer_signature(features, model.predict(features)))
    profile = build_profile(features, model.predict(features).tolist(), signature=read_signature(directory),
                            model={"name": REGRESSOR_NAME, "version": REGRESSOR_VERSION})
    write_profile(profile, directory / PROFILE_FILE_NAME)
    return directory


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



@dataclass
class InProcessProxy:
    """The proxy's Flask app in this process (no uWSGI, no host sampler), with in-memory telemetry:
    for app logic (validation, error shapes, counting, spans). Answers are Flask test responses
    (``.json`` and ``.text`` are properties)."""

    app: Flask
    spans: InMemorySpanExporter
    metric_reader: InMemoryMetricReader

    @classmethod
    def start(cls, upstream: str, **settings: str) -> InProcessProxy:
        """``settings`` as ``start_proxy_process`` takes them, parsed as the process parses flags."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from inferwatch.proxy.app import create_app
        from inferwatch.proxy.config import load_settings
        from inferwatch.proxy.telemetry import setup_telemetry

        spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        telemetry = setup_telemetry(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader], environ={})
        config = load_settings({"upstream": upstream, **{key: str(value) for key, value in settings.items()}}, environ={})
        return cls(create_app(config, telemetry, start_sampler=False), spans, reader)

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def post(self, path: str = "/predict", **kwargs) -> TestResponse:
        return self.client.post(path, **kwargs)

    def get(self, path: str, **kwargs) -> TestResponse:
        return self.client.get(path, **kwargs)

    def metrics_text(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample on /metrics as {(name, sorted labels): value}."""
        return parse_samples(self.metrics_text())

    def close(self) -> None:
        from inferwatch.proxy.app import close_app

        close_app(self.app)


def start_proxy_process(upstream: str, log_dir: Path, *, port: int | None = None, env: dict[str, str] | None = None,
                        ready_path: str = "/healthz", timeout: float = PROXY_START_TIMEOUT, **settings: str) -> Proxy:
    """Start ``inferwatch serve`` in front of ``upstream`` and wait until ``ready_path`` answers.

    ``settings`` become ``INFERWATCH_<KEY>`` variables (``read_timeout=1``); ``env`` is added last
    and wins (OTEL_* variables, or a whole deployment's environment). The log is
    ``log_dir/proxy-<port>.log``. The caller stops ``proxy.process``; a proxy that does not get
    ready is stopped here.
    """
    port = free_port() if port is None else port
    process = ManagedProcess(
        "inferwatch", [sys.executable, "-m", "inferwatch", "serve"], log_dir / f"proxy-{port}.log",
        env=child_env(**{"INFERWATCH_UPSTREAM": upstream, "INFERWATCH_PORT": str(port),
                         **{f"INFERWATCH_{key.upper()}": str(value) for key, value in settings.items()},
                         **(env or {})}),
    ).start()
    try:
        process.wait_ready(f"http://127.0.0.1:{port}{ready_path}", timeout=timeout)
    except BaseException:
        process.stop()
        raise
    return Proxy(port, process)


def stop_proxy(proxy: Proxy) -> None:
    proxy.session.close()
    proxy.process.stop()


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



def otlp_env(collector: Collector, export_interval_ms: int = 300) -> dict[str, str]:
    """Environment that makes a proxy export traces and metrics to ``collector`` quickly."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
        "OTEL_METRIC_EXPORT_INTERVAL": str(export_interval_ms),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }



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

