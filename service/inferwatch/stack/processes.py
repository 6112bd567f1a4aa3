"""Starting and stopping the real components: free ports, readiness waits, clean shutdown.

Used by the tests (every server they need is started here) and by the native stack.
Each process runs in its own process group, so stopping it also stops whatever it spawned
(``mlflow models serve`` execs uvicorn, which may fork workers).
"""

from __future__ import annotations

import functools
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inferwatch.stack.files import stack_root

# The checkout, or the installed package's copy, holding the stack's files (inferwatch.stack.files).
STACK_ROOT = stack_root()
COLLECTOR_CONFIG = STACK_ROOT / "otel-collector" / "config.yaml"
JAEGER_CONFIG = STACK_ROOT / "observability" / "jaeger" / "config.yaml"
# Prometheus's feature flags wherever inferwatch runs it (the tests, the native stack, and
# docker-compose.yml, which a test keeps in step):
# - exemplar-storage keeps the exemplars it scrapes (trace ids on the latency buckets);
# - created-timestamp-zero-ingestion reads a counter's or histogram's start time (the collector's
#   exporter serves it in the protobuf format, which the flag makes Prometheus ask for first, and
#   the proxy's /metrics as OpenMetrics `_created` lines) and stores a 0 there before the first
#   scraped value, so that rate() and increase() count what a new series counted before its
#   first scrape: a burst of failures right after a start, or the first failure of a new reason.
PROMETHEUS_FEATURES = "--enable-feature=exemplar-storage,created-timestamp-zero-ingestion"
# Where the build scripts put each program (each prints the folder that holds its pair).
PROMETHEUS_BUILD = "observability/prometheus/build.sh"
ALERTMANAGER_BUILD = "observability/alertmanager/build.sh"
CHART_LIBRARY_INSTALL = "observability/prometheus/chart-library/install.sh"


class ProcessFailed(RuntimeError):
    """A managed process exited or never became ready; carries the tail of its log."""

    def __init__(self, name: str, reason: str, log_tail: str):
        super().__init__(f"{name}: {reason}\n--- last log lines ---\n{log_tail}")
        self.name = name
        self.log_tail = log_tail


# Ports free_port hands out: below the kernel's ephemeral range (ip_local_port_range, 32768 up by
# default). A port the kernel picked (bind to port 0) comes from that range, the same range it
# takes the local port of every outgoing connection from: between the pick and the service's own
# bind, any connection on the machine could take it (a Jaeger once failed to start so, with a
# benchmark running beside the tests). Below the range only another listener can.
LOWEST_PORT = 20_000
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


@functools.cache
def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, below the ephemeral range, not handed out before by this process."""
    high = _ephemeral_start()
    if high - LOWEST_PORT < 1_000:  # a machine whose ephemeral range starts low: the kernel picks
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return sock.getsockname()[1]
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(LOWEST_PORT, high)
        with _ports_lock:
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port


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


def run_build(script: str, stderr=subprocess.PIPE, env: Mapping[str, str] | None = None,
              timeout: float = 2400) -> Path:
    """What a build script of the stack (a path under :data:`STACK_ROOT`) prints last: the path of
    what it built, cached after the first run (see observability/cached-build.sh).

    Raises ``subprocess.CalledProcessError`` when the build fails (its log went to ``stderr``).
    """
    built = subprocess.run(["bash", str(STACK_ROOT / script)], stdout=subprocess.PIPE,
                           stderr=stderr, env=env, text=True, timeout=timeout, check=True)
    return Path(built.stdout.strip().splitlines()[-1])


def build_collector(stderr=subprocess.PIPE, env: Mapping[str, str] | None = None) -> str:
    """Path of the collector binary: ``otel-collector/build.sh`` builds it once, then it is cached."""
    return str(run_build("otel-collector/build.sh", stderr, env, timeout=1800))


def build_prometheus(stderr=subprocess.PIPE, env: Mapping[str, str] | None = None) -> Path:
    """The folder of ``prometheus`` and ``promtool`` (3.16, from the Go module; about 8 minutes
    the first time on 2 cores, then cached)."""
    return run_build(PROMETHEUS_BUILD, stderr, env)


def build_alertmanager(stderr=subprocess.PIPE, env: Mapping[str, str] | None = None) -> Path:
    """The folder of ``alertmanager`` and ``amtool`` (0.35, from the Go module, cached)."""
    return run_build(ALERTMANAGER_BUILD, stderr, env)


def install_chart_library(stderr=subprocess.PIPE, env: Mapping[str, str] | None = None) -> Path:
    """The uPlot package folder (node_modules/uplot) the console pages draw with (npm, cached)."""
    return run_build(CHART_LIBRARY_INSTALL, stderr, env, timeout=600)


def prometheus_command(binaries: Path, config: Path, port: int, data: Path, *flags: str) -> list[str]:
    """Prometheus on 127.0.0.1:``port`` with :data:`PROMETHEUS_FEATURES` and ``flags``."""
    return [str(binaries / "prometheus"), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={data}", PROMETHEUS_FEATURES, *flags]


def alertmanager_command(binaries: Path, config: Path, port: int, data: Path, cluster_port: int = 0) -> list[str]:
    """Alertmanager on 127.0.0.1:``port``; clustering off unless ``cluster_port`` is given."""
    return [str(binaries / "alertmanager"), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.path={data}",
            f"--cluster.listen-address={f'127.0.0.1:{cluster_port}' if cluster_port else ''}"]


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
    5 to 10 minutes cold), then it is cached by the wrapper module's go.mod and go.sum."""
    return str(run_build("observability/jaeger/build.sh", stderr, env))


JAEGER_BADGER_CONFIG = STACK_ROOT / "observability" / "jaeger" / "badger.yaml"


def jaeger_command(binary: str, on_disk: bool = False) -> list[str]:
    """Jaeger with config.yaml (the memory store), or with badger.yaml over it (``on_disk``: the
    store in JAEGER_BADGER_DIR, see :func:`jaeger_env`)."""
    overlay = ["--config", str(JAEGER_BADGER_CONFIG)] if on_disk else []
    return [binary, "--config", str(JAEGER_CONFIG), *overlay]


def jaeger_env(ports: JaegerPorts, max_traces: int = 20000, store: Path | None = None) -> dict[str, str]:
    """The JAEGER_* variables of observability/jaeger/config.yaml for these ports, and of
    badger.yaml for a store on disk in ``store``."""
    return {
        **({"JAEGER_BADGER_DIR": str(store)} if store is not None else {}),
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports.query_http}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports.query_grpc}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports.health}",
        "JAEGER_TELEMETRY_HOST": "127.0.0.1",
        "JAEGER_TELEMETRY_PORT": str(ports.telemetry),
        "JAEGER_MAX_TRACES": str(max_traces),
    }
