"""``inferwatch up``: the whole stack as native processes, for machines without Docker.

In dependency order, each waited for until it answers: the demo model (trained once per run
directory), the MLflow model server, Jaeger v2 (the trace store, in memory, built by
``observability/jaeger/build.sh``, cached; its query API on 127.0.0.1, no web UI), our
OpenTelemetry Collector (built by ``otel-collector/build.sh``, cached; traces to Jaeger), the
proxy (OTLP to the collector, its inference log too, which the collector writes to
``<run dir>/inference-log/``), an SMTP sink (aiosmtpd, storing mail in a Maildir), Alertmanager
(its configuration rendered for the sink), and Prometheus (the rules rendered for this stack's
Jaeger address, scraping the collector, storing exemplars, serving the dashboard as console pages
from ``observability/prometheus/consoles/``). Then it sends demo traffic, prints the URLs (the
dashboard's first), and stops everything on Ctrl-C or SIGTERM, leaving no process behind. Each
component logs to ``<run dir>/<name>.log``.

A taken port or a missing binary stops the start before anything runs, with what to do.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inferwatch.contract.metrics import DEFAULT_SERVICE_NAME
from inferwatch.contract.profile import PROFILE_FILE_NAME
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.render.alertmanager import ALERTMANAGER_TEMPLATES, write_alertmanager_config
from inferwatch.render.consoles import CONSOLES_DIR, dashboard_path
from inferwatch.render.prometheus_rules import rule_files
from inferwatch.render.slo_rules import retention
from inferwatch.stack.demo_model import save_demo_model
from inferwatch.stack.load import LoadPlan, run_load
from inferwatch.stack.processes import (
    COLLECTOR_CONFIG,
    ROOT,
    PROMETHEUS_EXEMPLAR_STORAGE,
    CollectorPorts,
    JaegerPorts,
    ManagedProcess,
    ProcessFailed,
    build_collector,
    build_jaeger,
    collector_command,
    collector_env,
    jaeger_command,
    jaeger_env,
    mlflow_serve_command,
)

INSTALL_HINT = "run scripts/system-deps.sh (apt-get install -y prometheus prometheus-alertmanager)"
# Where Prometheus packages put the console libraries (prom.lib): Debian ships them as examples.
CONSOLE_LIBRARY_DIRS = (
    Path("/usr/share/prometheus/console_libraries"),
    Path("/etc/prometheus/console_libraries"),
    Path("/usr/share/doc/prometheus/examples/console_libraries"),
)


def console_libraries(candidates: tuple[Path, ...] = CONSOLE_LIBRARY_DIRS) -> Path:
    """The folder holding Prometheus's console library prom.lib (the dashboard pages use it)."""
    for folder in candidates:
        if (folder / "prom.lib").is_file():
            return folder
    raise StackError("Prometheus's console libraries (prom.lib) are in none of "
                     f"{', '.join(map(str, candidates))}: reinstall Prometheus (apt-get install --reinstall "
                     "prometheus; a Docker-style dpkg filter that drops /usr/share/doc drops them too)")


def prometheus_flags() -> list[str]:
    """Prometheus's flags beyond paths and ports: keep the SLOs' whole period (the error budget
    reads it whole; Prometheus's own default is 15 days)."""
    return [f"--storage.tsdb.retention.time={retention()}"]


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


@dataclass(frozen=True)
class StackPorts:
    """Every port the stack listens on (all on 127.0.0.1); each has a ``--<name>-port`` flag."""

    proxy: int = 8000
    mlflow: int = 5005
    otlp_grpc: int = 4317
    otlp_http: int = 4318
    collector_metrics: int = 8889
    collector_health: int = 13133
    collector_telemetry: int = 8888
    jaeger_otlp_grpc: int = 14317
    jaeger_otlp_http: int = 14318
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_health: int = 13134
    jaeger_telemetry: int = 18888
    prometheus: int = 9090
    alertmanager: int = 9093
    alertmanager_cluster: int = 0  # 0: clustering off
    smtp: int = 1025

    def named(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if getattr(self, field.name)}


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def find_binary(*names: str, hint: str, search_path: str | None = None) -> str:
    for name in names:
        path = shutil.which(name, path=search_path)
        if path:
            return path
    raise StackError(f"{' or '.join(names)} not found on PATH: {hint}")


class Stack:
    def __init__(self, run_dir: Path, ports: StackPorts):
        self.run_dir = run_dir.resolve()
        self.ports = ports
        self.processes: list[ManagedProcess] = []
        self.env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
                        PYTHONUNBUFFERED="1")

    def preflight(self) -> dict[str, str]:
        """Check ports and binaries before anything starts; return the binaries' paths."""
        for name, port in self.ports.named().items():
            if not port_is_free(port):
                flag = "--" + name.replace("_", "-") + "-port"
                raise StackError(f"port {port} for {name.replace('_', ' ')} is taken; choose another with {flag}")
        if not COLLECTOR_CONFIG.exists():
            raise StackError(f"the repository's files are not at {ROOT}: run inferwatch up from a checkout")
        self.console_libraries = console_libraries()
        binaries = {
            "mlflow": find_binary("mlflow", hint="install the project with scripts/bootstrap.sh", search_path=self.env["PATH"]),
            "prometheus": find_binary("prometheus", hint=INSTALL_HINT, search_path=self.env["PATH"]),
            "alertmanager": find_binary("prometheus-alertmanager", "alertmanager", hint=INSTALL_HINT, search_path=self.env["PATH"]),
            "go": find_binary("go", hint="install Go >= 1.26 to build the collector and Jaeger", search_path=self.env["PATH"]),
        }
        return binaries

    def start(self) -> None:
        binaries = self.preflight()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        model_dir = self.run_dir / "demo-model"
        if not (model_dir / PROFILE_FILE_NAME).exists():  # a run dir from before profiles: train again
            shutil.rmtree(model_dir, ignore_errors=True)
            save_demo_model(model_dir)
        p = self.ports
        self._spawn("mlflow", mlflow_serve_command(model_dir, p.mlflow), f"http://127.0.0.1:{p.mlflow}/ping", 120)
        jaeger = self.jaeger_ports
        self._spawn("jaeger", jaeger_command(self._jaeger_binary()), jaeger.health_url, env=jaeger_env(jaeger))
        collector = CollectorPorts(p.otlp_grpc, p.otlp_http, p.collector_metrics, p.collector_health,
                                   p.collector_telemetry)
        self._spawn("otelcol", collector_command(self._collector_binary()),
                    f"http://127.0.0.1:{p.collector_health}/",
                    env={**collector_env(collector, self.run_dir / "traces.jsonl", jaeger,
                                         self.inference_log_dir / "otlp.jsonl"),
                         "OTELCOL_TRACES_SAMPLE_PERCENT": "100"})
        self._spawn("proxy", [sys.executable, "-m", "inferwatch", "serve"],
                    f"http://127.0.0.1:{p.proxy}/readyz", env={
                        "INFERWATCH_UPSTREAM": f"http://127.0.0.1:{p.mlflow}",
                        "INFERWATCH_PORT": str(p.proxy),
                        "INFERWATCH_MODEL_DIR": str(model_dir),
                        # The inference log as OTLP logs: the collector writes them to
                        # <run dir>/inference-log/, where `inferwatch logs` reads by default.
                        "INFERWATCH_PAYLOAD_LOG_OTLP": "true",
                        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{p.otlp_http}",
                        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
                    })
        mail = self.run_dir / "mail"
        self._spawn("smtp-sink", [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{p.smtp}",
                                  "-c", "aiosmtpd.handlers.Mailbox", str(mail)], None)
        self._wait_port("smtp-sink", p.smtp)
        config = write_alertmanager_config(
            self.run_dir / "alertmanager" / "alertmanager.yml",
            {"INFERWATCH_SMTP_SMARTHOST": f"127.0.0.1:{p.smtp}"},
            ROOT / ALERTMANAGER_TEMPLATES,
        )
        self._spawn("alertmanager", [
            binaries["alertmanager"], f"--config.file={config}",
            f"--storage.path={self.run_dir / 'alertmanager' / 'data'}",
            f"--web.listen-address=127.0.0.1:{p.alertmanager}",
            f"--cluster.listen-address={'127.0.0.1:%d' % p.alertmanager_cluster if p.alertmanager_cluster else ''}",
        ], f"http://127.0.0.1:{p.alertmanager}/-/ready")
        self._spawn("prometheus", [
            binaries["prometheus"], f"--config.file={self._prometheus_config()}",
            f"--storage.tsdb.path={self.run_dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{p.prometheus}",
            PROMETHEUS_EXEMPLAR_STORAGE,
            *prometheus_flags(),
            # The dashboard: the panel model's console pages, drawn with the console libraries.
            f"--web.console.templates={ROOT / CONSOLES_DIR}",
            f"--web.console.libraries={self.console_libraries}",
        ], f"http://127.0.0.1:{p.prometheus}/-/ready", 60)

    @property
    def jaeger_ports(self) -> JaegerPorts:
        p = self.ports
        return JaegerPorts(p.jaeger_otlp_grpc, p.jaeger_otlp_http, p.jaeger_query, p.jaeger_query_grpc,
                           p.jaeger_health, p.jaeger_telemetry)

    def _jaeger_binary(self) -> str:
        print("building Jaeger (about 5-10 minutes the first time, cached after)...", flush=True)
        log_path = self.run_dir / "jaeger-build.log"
        with open(log_path, "ab") as log:
            try:
                return build_jaeger(stderr=log, env=self.env)
            except subprocess.CalledProcessError:
                raise StackError(f"the Jaeger build failed; see {log_path}") from None

    def _collector_binary(self) -> str:
        print("building the collector (cached after the first time)...", flush=True)
        log_path = self.run_dir / "otelcol-build.log"
        with open(log_path, "ab") as log:
            try:
                return build_collector(stderr=log, env=self.env)
            except subprocess.CalledProcessError:
                raise StackError(f"the collector build failed; see {log_path}") from None

    def _prometheus_config(self) -> Path:
        """The committed prometheus.yml with this stack's ports, and the committed rules rendered
        with this stack's Jaeger address (the latency alert links its slow traces there)."""
        import yaml  # the demo extra: the service image runs without it
        committed = ROOT / "observability" / "prometheus" / "prometheus.yml"
        config = yaml.safe_load(committed.read_text())
        rules = self.run_dir / "rules"
        rules.mkdir(exist_ok=True)
        stack_thresholds = dataclasses.replace(THRESHOLDS, jaeger_url=self.jaeger_ports.query_url)
        for name, text in rule_files(stack_thresholds).items():
            (rules / name).write_text(text)
        config["rule_files"] = [str(rules / "*.yml")]
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{self.ports.alertmanager}"]
        config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{self.ports.collector_metrics}"]
        path = self.run_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _spawn(self, name: str, command: list[str], ready_url: str | None, timeout: float = 30.0,
               env: dict[str, str] | None = None) -> ManagedProcess:
        print(f"starting {name}...", flush=True)
        process = ManagedProcess(name, command, self.run_dir / f"{name}.log", env=dict(self.env, **(env or {})))
        self.processes.append(process.start())
        if ready_url:
            process.wait_ready(ready_url, timeout=timeout)
        return process

    def _wait_port(self, name: str, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_answers(port):
            process = next(p for p in self.processes if p.name == name)
            if not process.running or time.monotonic() > deadline:
                raise ProcessFailed(name, f"not listening on {port}", process.log_tail())
            time.sleep(0.1)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def urls(self) -> dict[str, str]:
        p = self.ports
        return {
            "dashboard": f"http://127.0.0.1:{p.prometheus}{dashboard_path()}",
            "proxy": f"http://127.0.0.1:{p.proxy}/predict",
            "metrics": f"http://127.0.0.1:{p.proxy}/metrics",
            "collector": f"http://127.0.0.1:{p.collector_metrics}/metrics",
            "prometheus": f"http://127.0.0.1:{p.prometheus}",
            "alertmanager": f"http://127.0.0.1:{p.alertmanager}",
            "emails": str(self.run_dir / "mail" / "new"),
            "traces": f"{self.jaeger_ports.query_url}/api/traces?service={DEFAULT_SERVICE_NAME}"
                      "   (or: inferwatch traces --slow)",
            "logs": str(self.run_dir),
            "inference": f"{self.inference_log_dir}   (inferwatch logs {self.inference_log_dir})",
        }

    @property
    def inference_log_dir(self) -> Path:
        """Where the collector writes the proxy's inference log (OTLP JSON lines)."""
        return self.run_dir / "inference-log"


def up(run_dir: Path, ports: StackPorts, traffic: int, duration: float | None, bad_share: float = 0.0) -> int:
    stack = Stack(run_dir, ports)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    started = time.monotonic()
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.1f} s", flush=True)
        for name, url in stack.urls().items():
            print(f"{name:>12}: {url}", flush=True)
        if traffic:
            plan = LoadPlan(f"http://127.0.0.1:{ports.proxy}", count=traffic, concurrency=2, bad_share=bad_share)
            print(run_load(plan, progress=lambda *_: None).summary(), flush=True)
        print("running; Ctrl-C stops the stack", flush=True)
        deadline = None if duration is None else time.monotonic() + duration
        while not stopped.wait(0.5):
            if deadline is not None and time.monotonic() > deadline:
                break
            for process in stack.processes:
                if not process.running:
                    raise ProcessFailed(process.name, "exited unexpectedly", process.log_tail())
    except KeyboardInterrupt:
        pass
    except (StackError, ProcessFailed) as error:
        print(f"inferwatch up: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0
