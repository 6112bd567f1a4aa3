"""Real Prometheus and Alertmanager (built from their Go modules) and an SMTP sink, started by the tests.

Each server listens on a free port on 127.0.0.1 and keeps its data, configuration and log in the
test's temporary directory. Every wait is bounded: :func:`poll` takes a deadline.

This module is the one builder of that stack: :func:`start_prometheus` (a prometheus.yml text, the
committed rule files or rendered ones beside it), :func:`start_alertmanager` (the rendered
alertmanager.yml with the committed templates) and :func:`start_alerting_stack` (an SMTP sink,
Alertmanager and Prometheus wired together). Tests do not write these files themselves.
"""

from __future__ import annotations

import email
import email.policy
import functools
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import pytest
import requests
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from inferwatch.contract.thresholds import RouteTimings
from inferwatch.render.alertmanager import SmtpSettings, render_alertmanager_config
from inferwatch.stack.processes import (
    ManagedProcess,
    alertmanager_command,
    build_alertmanager,
    build_prometheus,
    free_port,
    prometheus_command,
)

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "observability" / "prometheus"
ALERTMANAGER_DIR = REPO / "observability" / "alertmanager"
START_TIMEOUT = 60.0
# Alertmanager's group timings shortened for tests: a notification a second after the alert.
FAST_TIMINGS = RouteTimings(group_wait="1s", group_interval="1s", repeat_interval="1h")

T = TypeVar("T")


@functools.cache
def tool(name: str) -> Path:
    """prometheus, promtool, alertmanager or amtool: the path of the one the stack runs, built from
    its Go module by its build script (observability/*/build.sh, cached); a failed build fails the
    test with the build's log."""
    build = {"prometheus": build_prometheus, "promtool": build_prometheus,
             "alertmanager": build_alertmanager, "amtool": build_alertmanager}[name]
    try:
        return build() / name
    except subprocess.CalledProcessError as error:
        pytest.fail(f"building {name} failed:\n{error.stderr}")


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``check`` until it returns something truthy, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last answer: {last!r}")


def prometheus_test_config(scrape_target: str | Sequence[str], rule_files: str, alertmanager: str | None,
                           interval: str = "1s", job_name: str = "inferwatch", extra_jobs: Sequence[dict] = ()) -> str:
    """The committed prometheus.yml with test-only addresses and short scrape/evaluation intervals.

    ``scrape_target`` (one address or several) is scraped as the job ``job_name`` (the rules take
    any name: "inferwatch" for a proxy scraped directly, "otel-collector" as committed for the
    collector), beside ``extra_jobs`` (scrape configs, e.g. another team's job). Without
    ``alertmanager`` the alerting section is left out: nothing listens to alerts.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [rule_files]
    if alertmanager is None:
        del config["alerting"]
    else:
        [alertmanagers] = config["alerting"]["alertmanagers"]
        alertmanagers["static_configs"] = [{"targets": [alertmanager]}]
    [job] = config["scrape_configs"]
    job["job_name"] = job_name
    targets = [scrape_target] if isinstance(scrape_target, str) else list(scrape_target)
    job["static_configs"] = [{"targets": targets}]
    config["scrape_configs"].extend(extra_jobs)
    return yaml.safe_dump(config, sort_keys=False)


def write_rules(rules_dir: Path, rules: Mapping[str, str] | None = None) -> Path:
    """``rules`` (file name to text, e.g. ``rule_files(for_overrides=...)``) into ``rules_dir``;
    without them the committed rule files, verbatim."""
    rules_dir.mkdir(parents=True)
    if rules is None:
        rules = {path.name: path.read_text() for path in (PROMETHEUS_DIR / "rules").glob("*.yml")}
    for name, text in rules.items():
        (rules_dir / name).write_text(text)
    return rules_dir


def start_prometheus(workdir: Path, config: str, rules: Mapping[str, str] | None = None) -> PrometheusServer:
    """Prometheus started in ``workdir`` with ``config`` as its prometheus.yml and the rule files
    (see :func:`write_rules`) in ``workdir/rules``, which a config's ``rules/*.yml`` reads."""
    write_rules(workdir / "rules", rules)
    path = workdir / "prometheus.yml"
    path.write_text(config)
    return PrometheusServer(path, workdir).start()


def start_alertmanager(workdir: Path, smtp: SmtpSettings, timings: RouteTimings = FAST_TIMINGS) -> AlertmanagerServer:
    """Alertmanager started in ``workdir`` with the rendered alertmanager.yml (mail through
    ``smtp``, the committed templates, ``timings``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(render_alertmanager_config(smtp, timings,
                                                 templates=str(ALERTMANAGER_DIR.resolve() / "templates" / "*.tmpl")))
    return AlertmanagerServer(config, workdir).start()


@dataclass
class PrometheusServer:
    config_path: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        command = prometheus_command(tool("prometheus").parent, self.config_path, self.port, self.workdir / "data")
        self.process = ManagedProcess("prometheus", command, self.workdir / "prometheus.log", cwd=self.workdir).start()
        try:
            self.process.wait_ready(self.url + "/-/ready", timeout=START_TIMEOUT)
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        response = requests.get(self.url + "/api/v1/query", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def exemplars(self, expr: str, start: float, end: float) -> list[dict]:
        """/api/v1/query_exemplars: [{"seriesLabels": {...}, "exemplars": [{"labels", "value", "timestamp"}]}]."""
        response = requests.get(self.url + "/api/v1/query_exemplars",
                                params={"query": expr, "start": start, "end": end}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def alerts(self, name: str) -> list[dict]:
        response = requests.get(self.url + "/api/v1/alerts", timeout=10)
        response.raise_for_status()
        return [a for a in response.json()["data"]["alerts"] if a["labels"]["alertname"] == name]


@dataclass
class AlertmanagerServer:
    config_path: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> AlertmanagerServer:
        # no gossip port: a single instance
        command = alertmanager_command(tool("alertmanager").parent, self.config_path, self.port, self.workdir / "data")
        self.process = ManagedProcess("alertmanager", command, self.workdir / "alertmanager.log", cwd=self.workdir).start()
        try:
            self.process.wait_ready(self.url + "/-/ready", timeout=START_TIMEOUT)
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class _RecordingHandler:
    """Keeps every message; refuses mail from a client that did not log in, when a login is set."""

    def __init__(self, login_required: bool):
        self.login_required = login_required
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.login_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that keeps what it receives.

    With ``username``/``password`` it offers AUTH PLAIN without TLS (Go's SMTP client allows that
    on loopback only) and accepts mail only from a client that logged in with exactly those.
    """

    def __init__(self, username: str | None = None, password: str | None = None):
        self.port = free_port()
        self.handler = _RecordingHandler(login_required=username is not None)
        self.logins: list[tuple[str, bool]] = []
        self._credentials = (username, password)
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate if username is not None else None,
            auth_require_tls=False,
            # aiosmtpd's LOGIN challenges ("User Name\0") are not the usual "Username:" that
            # Alertmanager's LOGIN client expects; real servers also offer PLAIN, as here.
            auth_exclude_mechanism=["LOGIN"],
        )

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()) == self._credentials
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def wait_for(self, predicate: Callable[[EmailMessage], bool], timeout: float, what: str) -> EmailMessage:
        return poll(lambda: next((m for m in self.messages() if predicate(m)), None), timeout, what)


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, f"no text/plain part in:\n{message}"
    return part.get_content().replace("\r\n", "\n")


@dataclass
class AlertingStack:
    """Prometheus (1 s scrapes and evaluations) sending alerts to Alertmanager, which mails an SMTP sink."""

    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    smtp: SmtpSink

    def stop(self) -> None:
        for component in (self.prometheus, self.alertmanager, self.smtp):
            component.stop()


def start_alerting_stack(workdir: Path, scrape_target: str | Sequence[str], *, smtp: SmtpSink | None = None,
                         smtp_settings: SmtpSettings | None = None, rules: Mapping[str, str] | None = None,
                         job_name: str = "inferwatch", extra_jobs: Sequence[dict] = (),
                         timings: RouteTimings = FAST_TIMINGS) -> AlertingStack:
    """The alerting stack in ``workdir``: ``smtp`` (default a new sink without login), Alertmanager
    mailing it with ``smtp_settings`` (default: its address, no login), and Prometheus scraping
    ``scrape_target`` as ``job_name`` with ``rules`` (default the committed ones). What started is
    stopped again if a later part fails; the caller stops the stack."""
    started: list = []
    try:
        smtp = smtp if smtp is not None else SmtpSink()
        started.append(smtp.start())
        settings = smtp_settings if smtp_settings is not None else SmtpSettings(smarthost=smtp.smarthost)
        alertmanager = start_alertmanager(workdir / "alertmanager", settings, timings)
        started.append(alertmanager)
        prometheus = start_prometheus(workdir / "prometheus", prometheus_test_config(
            scrape_target, "rules/*.yml", alertmanager.address, job_name=job_name, extra_jobs=extra_jobs), rules)
        return AlertingStack(prometheus, alertmanager, smtp)
    except BaseException:
        for component in reversed(started):
            component.stop()
        raise


class ForeignExporter:
    """Another team's service in the same Prometheus: a real prometheus_client exporter (the
    library the seed's exporter was written with) under the names inferwatch uses.

    It exports ``http_requests_total``, ``http_request_duration_seconds``,
    ``prediction_success_total``, ``prediction_failure_total``, ``system_cpu_usage`` and an
    OpenTelemetry-style ``target_info`` that is not inferwatch's, and looks as bad as it can:
    every prediction fails, every request takes 5 s, the CPU is at 99 %. Nothing of it may fire
    an inferwatch alert or show on the dashboard. Not a double of any inferwatch component.
    """

    JOB = "seed_exporter"

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "Requests.", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "Latency.", ["method", "route", "status"],
                                 buckets=(1, 2, 10), registry=self.registry)
        self.successes = Counter("prediction_success", "Answered.", registry=self.registry)
        self.failures = Counter("prediction_failure", "Failed.", registry=self.registry)
        Gauge("system_cpu_usage", "CPU %.", registry=self.registry).set(99)
        Info("target", "Another OpenTelemetry service.", registry=self.registry).info(
            {"service_name": "billing", "telemetry_sdk_language": "java"})
        self.port = free_port()
        self.server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    @property
    def scrape_config(self) -> dict:
        return {"job_name": self.JOB, "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]}

    def fail(self, count: int) -> None:
        """``count`` predictions that failed slowly."""
        for _ in range(count):
            self.requests.labels("POST", "/predict", "503").inc()
            self.latency.labels("POST", "/predict", "503").observe(5)
            self.failures.inc()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
