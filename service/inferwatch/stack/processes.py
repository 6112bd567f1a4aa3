"""Starting and stopping the real components: free ports, readiness waits, clean shutdown.

Used by the tests (every server they need is started here) and by the native stack.
Each process runs in its own process group, so stopping it also stops whatever it spawned
(``mlflow models serve`` execs uvicorn, which may fork workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The repository checkout this package runs from (the collector and the configs live there).
ROOT = Path(__file__).resolve().parents[3]
COLLECTOR_CONFIG = ROOT / "otel-collector" / "config.yaml"
JAEGER_CONFIG = ROOT / "observability" / "jaeger" / "config.yaml"
# Prometheus keeps the exemplars it scrapes (OpenMetrics) only with this flag (2.42 has it).
PROMETHEUS_EXEMPLAR_STORAGE = "--enable-feature=exemplar-storage"


class ProcessFailed(RuntimeError):
    """A managed process exited or never became ready; carries the tail of its log."""

    def __init__(self, name: str, reason: str, log_tail: str):
        super().__init__(f"{name}: {reason}\n--- last log lines ---\n{log_tail}")
        self.name = name
        self.log_tail = log_tail


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


class ManagedProcess:
    """One child process with its log file; a context manager that always stops it."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ):
        self.name = name
        self.command = list(command)
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, url: str, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Poll ``url`` until it answers 2xx; fail early, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise ProcessFailed(self.name, f"exited with code {code} before it was ready", self.log_tail())
            if http_ok(url):
                return
            time.sleep(interval)
        raise ProcessFailed(self.name, f"not ready at {url} after {timeout:.0f} s", self.log_tail())

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout)
        self._signal_group(signal.SIGKILL)  # stragglers the leader left behind
        return self.process.returncode

    def kill(self) -> None:
        """Kill the whole group at once, as a crash would."""
        if self.process is not None:
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def mlflow_serve_command(model_dir: str | Path, port: int, host: str = "127.0.0.1", workers: int = 1) -> list[str]:
    """``mlflow models serve`` on one worker: with two, keep-alive requests pay ~40 ms each."""
    return [
        "mlflow", "models", "serve",
        "-m", str(model_dir),
        "-h", host,
        "-p", str(port),
        "-w", str(workers),
        "--env-manager", "local",
    ]


@dataclass(frozen=True)
class CollectorPorts:
    """The ports our collector listens on (all on 127.0.0.1)."""

    otlp_grpc: int = field(default_factory=free_port)
    otlp_http: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)
    health: int = field(default_factory=free_port)
    telemetry: int = field(default_factory=free_port)


def build_collector(stderr=subprocess.PIPE, env: Mapping[str, str] | None = None) -> str:
    """Path of the collector binary: ``otel-collector/build.sh`` builds it once, then it is cached.

    Raises ``subprocess.CalledProcessError`` when the build fails (its log went to ``stderr``).
    """
    built = subprocess.run(["bash", str(ROOT / "otel-collector" / "build.sh")], stdout=subprocess.PIPE,
                           stderr=stderr, env=env, text=True, timeout=1800, check=True)
    return built.stdout.strip().splitlines()[-1]


def collector_command(binary: str) -> list[str]:
    return [binary, "--config", str(COLLECTOR_CONFIG)]


def collector_env(ports: CollectorPorts, traces_file: str | Path, jaeger: JaegerPorts | None = None,
                  logs_file: str | Path | None = None) -> dict[str, str]:
    """The OTELCOL_* variables of config.yaml for these ports.

    Traces go to the Jaeger listening on ``jaeger``'s OTLP/gRPC port, or, without one, to
    ``traces_file`` (JSON lines). Logs (the inference log's OTLP records) go to ``logs_file``,
    by default ``inference-log/otlp.jsonl`` beside the traces file.
    """
    env = {
        "OTELCOL_LOGS_FILE": str(logs_file or Path(traces_file).parent / "inference-log" / "otlp.jsonl"),
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports.metrics}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports.health}",
        "OTELCOL_TELEMETRY_PORT": str(ports.telemetry),
        "OTELCOL_TRACES_FILE": str(traces_file),
        "OTELCOL_TRACES_EXPORTERS": "[file/traces]",
    }
    if jaeger is not None:
        env["OTELCOL_TRACES_EXPORTERS"] = "[otlp_grpc/traces]"
        env["OTELCOL_TRACES_OTLP_ENDPOINT"] = f"127.0.0.1:{jaeger.otlp_grpc}"
    return env


@dataclass(frozen=True)
class JaegerPorts:
    """The ports our Jaeger listens on (all on 127.0.0.1; see observability/jaeger/config.yaml)."""

    otlp_grpc: int = field(default_factory=free_port)
    otlp_http: int = field(default_factory=free_port)
    query_http: int = field(default_factory=free_port)
    query_grpc: int = field(default_factory=free_port)
    health: int = field(default_factory=free_port)
    telemetry: int = field(default_factory=free_port)

    @property
    def query_url(self) -> str:
        """The query API (/api/traces ...), which is also what alert links point at."""
        return f"http://127.0.0.1:{self.query_http}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health}/status"


def build_jaeger(stderr=subprocess.PIPE, env: Mapping[str, str] | None = None) -> str:
    """Path of the Jaeger v2 binary: ``observability/jaeger/build.sh`` builds it once (about
    5 to 10 minutes cold), then it is cached by the wrapper module's go.mod and go.sum.

    Raises ``subprocess.CalledProcessError`` when the build fails (its log went to ``stderr``).
    """
    built = subprocess.run(["bash", str(ROOT / "observability" / "jaeger" / "build.sh")], stdout=subprocess.PIPE,
                           stderr=stderr, env=env, text=True, timeout=2400, check=True)
    return built.stdout.strip().splitlines()[-1]


def jaeger_command(binary: str) -> list[str]:
    return [binary, "--config", str(JAEGER_CONFIG)]


def jaeger_env(ports: JaegerPorts, max_traces: int = 20000) -> dict[str, str]:
    """The JAEGER_* variables of observability/jaeger/config.yaml for these ports (memory store)."""
    return {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports.query_http}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports.query_grpc}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports.health}",
        "JAEGER_TELEMETRY_HOST": "127.0.0.1",
        "JAEGER_TELEMETRY_PORT": str(ports.telemetry),
        "JAEGER_MAX_TRACES": str(max_traces),
    }
