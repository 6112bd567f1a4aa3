"""``inferwatch up``: the whole stack as native processes, for machines without Docker.

In dependency order, each waited for until it answers: the demo model (trained once per run
directory), the MLflow model server, Jaeger v2 (the trace store, its Badger store in
``<run dir>/jaeger`` so traces outlive a restart; its query API on 127.0.0.1, no web UI), our
OpenTelemetry Collector (traces to Jaeger), the proxy (OTLP to the collector, its inference log
too, which the collector writes to ``<run dir>/inference-log/``), an SMTP sink (aiosmtpd, storing
mail in a Maildir), Alertmanager 0.35 (its configuration rendered for the sink), and Prometheus
3.16 (the rules rendered for this stack's Jaeger address, scraping the collector, storing
exemplars and start timestamps, serving the dashboard as console pages from
``observability/prometheus/consoles/`` with the chart library inlined).

What is not a Python package is built or installed by the stack's own scripts and cached (see
:mod:`inferwatch.stack.processes`): the collector, Jaeger, Prometheus and Alertmanager from their
Go modules (the first start takes about half an hour on 2 cores, later ones a second), uPlot from
npm. The files it runs with come from the checkout or, installed with pip, from the package
(:mod:`inferwatch.stack.files`), so it runs from any directory.

Then it prints the URLs (the dashboard's first), waits until Prometheus has scraped the proxy's
counters (at 0: the proxy creates every counter at start-up), and only then starts the demo
traffic, a steady trickle (``--traffic-rate`` requests a second, ``--bad-share`` of them bad; 0
turns it off) that runs until the stack stops: the dashboard moves, and ``--bad-share 0.5`` fires
HighPredictionFailureRate, whose e-mail lands in ``<run dir>/mail/new`` within about 4 minutes.
Ctrl-C or SIGTERM stops everything, leaving no process behind. Each component logs to
``<run dir>/<name>.log``, each build to ``<run dir>/<name>-build.log``.

A taken port or a missing tool (Go, npm) stops the start before anything runs, with what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inferwatch.contract.metrics import DEFAULT_SERVICE_NAME
from inferwatch.contract.profile import PROFILE_FILE_NAME
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.render.alertmanager import ALERTMANAGER_TEMPLATES, write_alertmanager_config
from inferwatch.render.consoles import (
    CONSOLE_LIBRARIES_DIR,
    CONSOLES_DIR,
    DASHBOARD_LIBRARY_FILE,
    LIBRARY_FILE,
    console_library,
    dashboard_path,
)
from inferwatch.render.prometheus_rules import rule_files
from inferwatch.render.slo_rules import retention
from inferwatch.stack.demo_model import save_demo_model
from inferwatch.stack.load import MAX_DURATION_S, LoadPlan, run_load
from inferwatch.stack.processes import (
    COLLECTOR_CONFIG,
    STACK_ROOT,
    CollectorPorts,
    JaegerPorts,
    ManagedProcess,
    ProcessFailed,
    alertmanager_command,
    build_alertmanager,
    build_collector,
    build_jaeger,
    build_prometheus,
    collector_command,
    collector_env,
    install_chart_library,
    jaeger_command,
    jaeger_env,
    mlflow_serve_command,
    prometheus_command,
)

# Requests a second of demo traffic when --traffic-rate is not given.
DEFAULT_TRAFFIC_RATE = 2.0
# How long the traffic waits for Prometheus's first scrape of the proxy's counters.
FIRST_SCRAPE_TIMEOUT = 90.0
# The counters whose first scrape the traffic waits for: the failure-rate alert's two.
FIRST_SCRAPE_QUERY = "count(prediction_success_total) and count(prediction_failure_total)"


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


def require_tool(name: str, hint: str, search_path: str | None = None) -> str:
    path = shutil.which(name, path=search_path)
    if not path:
        raise StackError(f"{name} not found on PATH: {hint}")
    return path


class Stack:
    def __init__(self, run_dir: Path, ports: StackPorts):
        self.run_dir = run_dir.resolve()
        self.ports = ports
        self.processes: list[ManagedProcess] = []
        self.env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
                        PYTHONUNBUFFERED="1")

    def preflight(self) -> None:
        """Check ports and tools before anything starts."""
        for name, port in self.ports.named().items():
            if not port_is_free(port):
                flag = "--" + name.replace("_", "-") + "-port"
                raise StackError(f"port {port} for {name.replace('_', ' ')} is taken; choose another with {flag}")
        if not COLLECTOR_CONFIG.exists():
            raise StackError(f"the stack's files are not at {STACK_ROOT}: reinstall inferwatch, or run from a checkout")
        path = self.env["PATH"]
        require_tool("mlflow", "install inferwatch with its demo extra (pip install 'inferwatch[demo]', or "
                     "scripts/bootstrap.sh in a checkout)", path)
        require_tool("go", "install Go >= 1.26: the collector, Jaeger, Prometheus and Alertmanager are built "
                     "from their Go modules", path)
        require_tool("npm", "install npm (apt-get install -y npm; scripts/system-deps.sh in a checkout): the "
                     "dashboard's chart library comes from npm", path)

    def start(self) -> None:
        self.preflight()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        built = self._build_everything()
        model_dir = self.run_dir / "demo-model"
        if not (model_dir / PROFILE_FILE_NAME).exists():  # a run dir from before profiles: train again
            shutil.rmtree(model_dir, ignore_errors=True)
            save_demo_model(model_dir)
        p = self.ports
        self._spawn("mlflow", mlflow_serve_command(model_dir, p.mlflow), f"http://127.0.0.1:{p.mlflow}/ping", 120)
        jaeger = self.jaeger_ports
        self._spawn("jaeger", jaeger_command(built["jaeger"], on_disk=True), jaeger.health_url,
                    env=jaeger_env(jaeger, store=self.run_dir / "jaeger"))
        collector = CollectorPorts(p.otlp_grpc, p.otlp_http, p.collector_metrics, p.collector_health,
                                   p.collector_telemetry)
        self._spawn("otelcol", collector_command(built["otelcol"]),
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
            STACK_ROOT / ALERTMANAGER_TEMPLATES,
        )
        self._spawn("alertmanager", alertmanager_command(built["alertmanager"], config, p.alertmanager,
                                                         self.run_dir / "alertmanager" / "data",
                                                         p.alertmanager_cluster),
                    f"http://127.0.0.1:{p.alertmanager}/-/ready")
        self._spawn("prometheus", prometheus_command(
            built["prometheus"], self._prometheus_config(), p.prometheus, self.run_dir / "prometheus",
            *prometheus_flags(),
            # The dashboard: the panel model's console pages, with the chart library they include.
            f"--web.console.templates={STACK_ROOT / CONSOLES_DIR}",
            f"--web.console.libraries={self._console_libraries(built['chart-library'])}",
        ), f"http://127.0.0.1:{p.prometheus}/-/ready", 60)

    def _build_everything(self) -> dict[str, Path]:
        """Build (or find in the caches) everything that is not a Python package, before any
        process starts: a build that fails leaves nothing running."""
        builds: dict[str, tuple[str, Callable]] = {
            "otelcol": ("the collector", build_collector),
            "jaeger": ("Jaeger (about 5-10 minutes the first time)", build_jaeger),
            "prometheus": ("Prometheus (about 8 minutes the first time)", build_prometheus),
            "alertmanager": ("Alertmanager (about 3 minutes the first time)", build_alertmanager),
            "chart-library": ("the dashboard's chart library (npm)", install_chart_library),
        }
        built = {}
        for name, (what, build) in builds.items():
            print(f"building {what}, cached after...", flush=True)
            log_path = self.run_dir / f"{name}-build.log"
            with open(log_path, "ab") as log:
                try:
                    built[name] = Path(build(stderr=log, env=self.env))
                except subprocess.CalledProcessError:
                    raise StackError(f"building {what} failed; see {log_path}") from None
        return built

    def _console_libraries(self, chart_library: Path) -> Path:
        """The console library folder: the chart library the pages include, inline, beside the
        committed library of the pages' shared style and script."""
        folder = self.run_dir / "console_libraries"
        folder.mkdir(exist_ok=True)
        (folder / LIBRARY_FILE).write_text(console_library(chart_library))
        shutil.copyfile(STACK_ROOT / CONSOLE_LIBRARIES_DIR / DASHBOARD_LIBRARY_FILE, folder / DASHBOARD_LIBRARY_FILE)
        return folder

    @property
    def jaeger_ports(self) -> JaegerPorts:
        p = self.ports
        return JaegerPorts(p.jaeger_otlp_grpc, p.jaeger_otlp_http, p.jaeger_query, p.jaeger_query_grpc,
                           p.jaeger_health, p.jaeger_telemetry)

    def _prometheus_config(self) -> Path:
        """The committed prometheus.yml with this stack's ports, and the committed rules rendered
        with this stack's Jaeger address (the latency alert links its slow traces there)."""
        import yaml  # the demo extra: the service image runs without it
        committed = STACK_ROOT / "observability" / "prometheus" / "prometheus.yml"
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


    def has_scraped_the_counters(self) -> bool:
        """Whether Prometheus holds the proxy's success and failure counters (:data:`FIRST_SCRAPE_QUERY`)."""
        url = (f"http://127.0.0.1:{self.ports.prometheus}/api/v1/query?"
               + urllib.parse.urlencode({"query": FIRST_SCRAPE_QUERY}))
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bool(json.load(answer)["data"]["result"])
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False

    def wait_for_first_scrape(self, stopped: threading.Event, timeout: float = FIRST_SCRAPE_TIMEOUT) -> bool:
        """Wait until Prometheus has scraped the counters, so that the demo traffic's first
        requests count in rate() from the start (an increase needs a sample before it)."""
        deadline = time.monotonic() + timeout
        while not self.has_scraped_the_counters():
            if time.monotonic() > deadline or stopped.wait(1.0):
                return False
        return True


class Traffic:
    """Demo predictions in the background at ``rate`` a second, ``bad_share`` of them bad, until
    :meth:`finish` (bounded anyway by :data:`~inferwatch.stack.load.MAX_DURATION_S`)."""

    def __init__(self, url: str, rate: float, bad_share: float):
        self.plan = LoadPlan(url, count=None, rate=rate, concurrency=2, duration=MAX_DURATION_S, bad_share=bad_share)
        self.stop = threading.Event()
        self.report = None
        self.thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def _run(self) -> None:
        self.report = run_load(self.plan, progress=lambda *_: None, stop=self.stop)

    def start(self) -> Traffic:
        self.thread.start()
        return self

    def finish(self) -> str:
        """Stop sending; the summary of what was sent."""
        self.stop.set()
        self.thread.join(timeout=70)
        return self.report.summary() if self.report else "the demo traffic did not finish"


def up(run_dir: Path, ports: StackPorts, duration: float | None, bad_share: float = 0.0,
       traffic_rate: float = DEFAULT_TRAFFIC_RATE) -> int:
    stack = Stack(run_dir, ports)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    started = time.monotonic()
    traffic = None
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.1f} s", flush=True)
        for name, url in stack.urls().items():
            print(f"{name:>12}: {url}", flush=True)
        if traffic_rate > 0:
            print("waiting for Prometheus to scrape the proxy's counters...", flush=True)
            if not stack.wait_for_first_scrape(stopped):
                print(f"Prometheus holds no counter of the proxy after {FIRST_SCRAPE_TIMEOUT:.0f} s (see "
                      f"{stack.run_dir / 'prometheus.log'}); sending the traffic anyway", flush=True)
            traffic = Traffic(f"http://127.0.0.1:{ports.proxy}", traffic_rate, bad_share).start()
            print(f"demo traffic: {traffic_rate:g} requests/s, {bad_share:.0%} of them bad", flush=True)
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
        if traffic is not None:
            print(traffic.finish(), flush=True)
        stack.stop()
        print("stopped", flush=True)
    return 0
