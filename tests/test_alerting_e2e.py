"""The failure-rate alert, end to end: a real outage becomes an email, and the recovery another.

Real components only: the proxy (``inferwatch serve``) in front of a real MLflow model server,
Prometheus with the committed prometheus.yml and rules, Alertmanager with the committed email
templates, and an aiosmtpd sink that requires the SMTP login Alertmanager reads from its password
file. Only timings are shortened, through test-only configuration: scrape and evaluation every
second, the alert's ``for`` (rendered with an override, the expression untouched) and
Alertmanager's group timings. The rule's [5m] window stays: it covers the whole test.

The scenario runs twice, once per way Prometheus can read the metrics: the proxy's own /metrics
scraped under the seed's job name (ml_model_exporter), and the collector's exporter (the default
in prometheus.yml, scrape job otel-collector) with the proxy sending it OTLP as service
fraud-model. No job is called "inferwatch": the rules recognise inferwatch by its marker.

A third test runs two models (two proxies, two service names) into one collector and one
Prometheus, beside another team's exporter of the same names: the totals per model are exact,
and the one failing model fires one alert and one email, naming it.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from alerting_stack import (
    AlertingStack,
    ForeignExporter,
    PrometheusServer,
    SmtpSink,
    poll,
    start_alerting_stack,
    text_body,
)
from inferwatch.render.alertmanager import SmtpSettings
from inferwatch.render.prometheus_rules import rule_files
from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from support import MlflowServer, otlp_env

ALERT = "HighPredictionFailureRate"
TEST_FOR = "2s"
SMTP_USER = "inferwatch-alerts"
SMTP_PASSWORD = "correct horse battery staple"
SENDER = "alerts@inferwatch.test"
RECIPIENT = "oncall@inferwatch.test"
# Deadlines; measured here: firing about 3 s after the failures, the email 1-2 s later.
ALERT_TIMEOUT = 30.0
EMAIL_TIMEOUT = 30.0

pytestmark = pytest.mark.slow


def diagnostics(stack: AlertingStack) -> str:
    """What each component saw, for a failure message."""
    try:
        counters = {r["metric"]["__name__"]: r["value"][1] for r in
                    stack.prometheus.query('{__name__=~"prediction_(success|failure)_total"}')}
        alerts = [(a["labels"]["alertname"], a["state"], a["value"]) for a in stack.prometheus.alerts(ALERT)]
    except Exception as error:  # the report must not hide the original failure
        counters, alerts = f"(query failed: {error})", "(unknown)"
    return "\n".join([
        f"counters in Prometheus: {counters}",
        f"{ALERT} in Prometheus: {alerts}",
        f"emails: {[m['Subject'] for m in stack.smtp.messages()]}; SMTP logins: {stack.smtp.logins}",
        "--- prometheus log ---", stack.prometheus.process.log_tail(20),
        "--- alertmanager log ---", stack.alertmanager.process.log_tail(20),
    ])


@pytest.fixture
def start_alerting(tmp_path):
    """``start_alerting(scrape_target, job_name, extra_jobs)``: SMTP sink (login required),
    Alertmanager and Prometheus scraping ``scrape_target`` as ``job_name``, stopped at teardown."""
    started: list[AlertingStack] = []

    def start(scrape_target: str, job_name: str, extra_jobs: tuple[dict, ...] = ()) -> AlertingStack:
        smtp = SmtpSink(SMTP_USER, SMTP_PASSWORD)
        stack = start_alerting_stack(tmp_path, scrape_target, smtp=smtp,
                                     smtp_settings=_smtp_settings(tmp_path / "alertmanager", smtp),
                                     rules=rule_files(for_overrides={ALERT: TEST_FOR}),
                                     job_name=job_name, extra_jobs=extra_jobs)
        started.append(stack)
        assert SMTP_PASSWORD not in stack.alertmanager.config_path.read_text()
        return stack

    yield start
    for stack in started:
        stack.stop()


def _smtp_settings(workdir: Path, smtp: SmtpSink) -> SmtpSettings:
    # The same path a deployment takes: settings from the environment, the password into a
    # 0600 file that only Alertmanager reads.
    env = {
        "INFERWATCH_SMTP_SMARTHOST": smtp.smarthost,
        "INFERWATCH_SMTP_FROM": SENDER,
        "INFERWATCH_ALERT_EMAIL_TO": RECIPIENT,
        "INFERWATCH_SMTP_USERNAME": SMTP_USER,
        "INFERWATCH_SMTP_PASSWORD": SMTP_PASSWORD,
        "INFERWATCH_SMTP_REQUIRE_TLS": "false",  # the sink offers no STARTTLS
    }
    workdir.mkdir(parents=True, exist_ok=True)
    return SmtpSettings.from_env(env, password_dir=workdir)


def predict(proxy, prometheus: PrometheusServer, count: int, job: str) -> dict[int, int]:
    """``count`` predictions; the first alone, until Prometheus has scraped its status.

    http_requests_total{status=...} is born with the first request of that status, and rate()
    cannot count the increase that created a series; after one scrape it counts the rest.
    """
    statuses: dict[int, int] = {}
    for sent in range(count):
        status = proxy.post(json=SEED_EXAMPLE).status_code
        statuses[status] = statuses.get(status, 0) + 1
        if sent == 0:
            poll(lambda: prometheus.query(f'http_requests_total{{job="{job}", status="{status}"}}'),
                 ALERT_TIMEOUT, f"Prometheus to scrape a {status} answer of {job}")
    return statuses


def scalar(prometheus: PrometheusServer, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def alert_state(prometheus: PrometheusServer) -> str | None:
    states = {alert["state"] for alert in prometheus.alerts(ALERT)}
    return "firing" if "firing" in states else next(iter(states), None)


def is_email_about(status: str, job: str):
    return lambda m: m["Subject"].startswith(f"[{status}") and f"{ALERT} ({job})" in m["Subject"]


@dataclass
class Scraped:
    """A proxy, where Prometheus scrapes it, and the job its series carry there."""

    proxy: object
    target: str
    scrape_job: str
    series_job: str


def start_proxy_and_target(scrape: str, mlflow_url: str, start_proxy, request) -> Scraped:
    """The proxy and what Prometheus scrapes for it: its own /metrics (the series' job is the
    scrape job's name) or the collector's (the series' job is the service name)."""
    if scrape == "service":
        proxy = start_proxy(mlflow_url)
        return Scraped(proxy, f"127.0.0.1:{proxy.port}", "ml_model_exporter", "ml_model_exporter")
    collector = request.getfixturevalue("start_collector")()
    proxy = start_proxy(mlflow_url, env={**otlp_env(collector), "OTEL_SERVICE_NAME": "fraud-model"})
    return Scraped(proxy, f"127.0.0.1:{collector.ports.metrics}", "otel-collector", "fraud-model")


@pytest.mark.parametrize("scrape", ["service", "collector"])
def test_a_model_server_outage_fires_the_failure_alert_by_email_and_the_recovery_resolves_it(
    scrape, demo_model, start_proxy, start_alerting, request, tmp_path
):
    started = time.monotonic()
    mlflow = MlflowServer(demo_model, free_port(), tmp_path / "mlflow.log").start()
    stack = None
    try:
        scraped = start_proxy_and_target(scrape, mlflow.url, start_proxy, request)
        proxy, job = scraped.proxy, scraped.series_job
        stack = start_alerting(scraped.target, scraped.scrape_job)
        prometheus = stack.prometheus

        # rate() needs two samples: let Prometheus see the counters at 0 before any traffic.
        poll(lambda: scalar(prometheus, f'prediction_success_total{{job="{job}"}}') == 0,
             ALERT_TIMEOUT, "Prometheus to scrape the counters at 0")

        # Healthy: predictions succeed, Prometheus sees them, nothing fires.
        assert predict(proxy, prometheus, 5, job) == {200: 5}
        poll(lambda: (scalar(prometheus, f'prediction_success_total{{job="{job}"}}') or 0) >= 5,
             ALERT_TIMEOUT, "Prometheus to scrape 5 successes")
        assert alert_state(prometheus) is None

        # Outage: the model server dies, every prediction fails with 503.
        mlflow.process.kill()
        failures = 10
        assert predict(proxy, prometheus, failures, job) == {503: failures}
        outage_at = time.monotonic()
        poll(lambda: alert_state(prometheus) == "firing", ALERT_TIMEOUT, f"{ALERT} to fire")
        fired_after = time.monotonic() - outage_at

        firing = stack.smtp.wait_for(is_email_about("FIRING", job), EMAIL_TIMEOUT, f"the {ALERT} email")
        emailed_after = time.monotonic() - outage_at
        assert_firing_email(firing, job)
        assert stack.smtp.logins and all(ok for _, ok in stack.smtp.logins), stack.smtp.logins

        assert_seed_queries_answer_on_real_metrics(prometheus)

        # Recovery: the model server is back, successes outnumber the failures 20 to 1.
        mlflow.start()
        assert predict(proxy, prometheus, 20 * failures, job) == {200: 20 * failures}
        poll(lambda: alert_state(prometheus) is None, ALERT_TIMEOUT, f"{ALERT} to resolve")
        resolved = stack.smtp.wait_for(is_email_about("RESOLVED", job), EMAIL_TIMEOUT, f"the resolved {ALERT} email")
        assert "Resolved:" in text_body(resolved)
    except Exception:
        if stack is not None:
            print(diagnostics(stack))
        raise
    finally:
        mlflow.stop()
    print(f"\nfired {fired_after:.1f} s and emailed {emailed_after:.1f} s after the outage; "
          f"whole test {time.monotonic() - started:.1f} s")


def assert_firing_email(message, job: str) -> None:
    assert message["Subject"] == f"[FIRING:1] {ALERT} ({job}): Prediction failure rate above 10%", message["Subject"]
    assert message["From"] == SENDER and message["To"] == RECIPIENT
    body = text_body(message)
    assert "Summary:     Prediction failure rate above 10%" in body, body
    value = re.search(r"^Value:\s+([0-9.]+)%$", body, re.MULTILINE)
    assert value, body
    # 10 failures after 5 successes: about two thirds failed (rate() extrapolates a little).
    assert 50 < float(value.group(1)) <= 100, body
    assert f"{value.group(1)}% of predictions ({job}) failed over the last 5m" in body, body
    assert f"job={job}" in body, body
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Prediction failure rate above 10%" in html and f"{value.group(1)}%" in html


def assert_seed_queries_answer_on_real_metrics(prometheus: PrometheusServer) -> None:
    """The seed README's PromQL, verbatim, on what Prometheus scraped from the real proxy."""
    at = time.time()

    def query(expr: str) -> list[dict]:
        return prometheus.query(expr, at=at)

    cpu = query("system_cpu_usage")
    assert len(cpu) == 1 and 0 <= float(cpu[0]["value"][1]) <= 100, cpu

    by_status = {r["metric"]["status"]: float(r["value"][1]) for r in query("rate(http_requests_total[1m])")
                 if r["metric"]["route"] == "/predict"}
    assert by_status.keys() == {"200", "503"} and by_status["503"] > 0, by_status

    p95 = query("histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[5m]))")
    assert {r["metric"]["status"] for r in p95} == {"200", "503"}, p95
    assert all(0 < float(r["value"][1]) <= 10 for r in p95), p95

    success_ratio = query(
        "rate(prediction_success_total[5m]) / (rate(prediction_success_total[5m]) + rate(prediction_failure_total[5m]))")
    failing = query(
        "rate(prediction_failure_total[5m]) / (rate(prediction_success_total[5m]) + rate(prediction_failure_total[5m])) > 0.1")
    assert len(success_ratio) == 1 and len(failing) == 1, (success_ratio, failing)
    success, failure = float(success_ratio[0]["value"][1]), float(failing[0]["value"][1])
    assert 0 < success < 0.5 and math.isclose(success + failure, 1.0, rel_tol=1e-9), (success, failure)


HEALTHY, FAILING = "fraud-model", "churn-model"


def test_two_models_through_one_collector_count_apart_and_only_the_failing_one_alerts_naming_it(
    mlflow_server, start_collector, start_proxy, start_alerting
):
    # start_collector before start_proxy: the proxies stop first and flush to a live collector.
    """One proxy per model, each with its own service name, into one collector and one Prometheus,
    beside another team's exporter of the same names that fails everything (and must not alert).
    The failing model's proxy has no model server behind it: every prediction is a 503."""
    collector = start_collector()
    healthy = start_proxy(mlflow_server.url, env={**otlp_env(collector), "OTEL_SERVICE_NAME": HEALTHY})
    failing = start_proxy(f"http://127.0.0.1:{free_port()}", env={**otlp_env(collector), "OTEL_SERVICE_NAME": FAILING})
    foreign = ForeignExporter()
    stack = None
    try:
        stack = start_alerting(f"127.0.0.1:{collector.ports.metrics}", "otel-collector", (foreign.scrape_config,))
        prometheus = stack.prometheus
        for job in (HEALTHY, FAILING):
            poll(lambda: scalar(prometheus, f'prediction_success_total{{job="{job}"}}') == 0,
                 ALERT_TIMEOUT, f"Prometheus to scrape {job}'s counters at 0")

        foreign.fail(1)
        assert predict(healthy, prometheus, 12, HEALTHY) == {200: 12}
        assert predict(failing, prometheus, 9, FAILING) == {503: 9}
        foreign.fail(50)

        # Exact totals per model, as Prometheus has them through the collector.
        def totals() -> dict[tuple[str, str], float]:
            return {(r["metric"]["__name__"], r["metric"]["job"]): float(r["value"][1]) for r in prometheus.query(
                'sum by (__name__, job) ({__name__=~"prediction_(success|failure)_total|http_requests_total", '
                f'job=~"{HEALTHY}|{FAILING}"}})')}
        expected = {("prediction_success_total", HEALTHY): 12, ("prediction_failure_total", HEALTHY): 0,
                    ("http_requests_total", HEALTHY): 12, ("prediction_success_total", FAILING): 0,
                    ("prediction_failure_total", FAILING): 9, ("http_requests_total", FAILING): 9}
        poll(lambda: totals() == expected, ALERT_TIMEOUT, f"the exact totals {expected}")

        # One alert, for the failing model, naming it; nothing for the healthy one or the foreign job.
        poll(lambda: [a["state"] for a in prometheus.alerts(ALERT)] == ["firing"], ALERT_TIMEOUT, f"{ALERT} to fire")
        [alert] = prometheus.alerts(ALERT)
        assert alert["labels"]["job"] == FAILING and f"({FAILING}) failed" in alert["annotations"]["description"]
        assert float(alert["value"]) == 1.0
        assert prometheus.query(f'rate(prediction_failure_total{{job="{ForeignExporter.JOB}"}}[1m]) > 0'), (
            "the foreign job's failures were scraped, so the absence of its alert means something")
        everything = requests.get(prometheus.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        assert not [a for a in everything if a["labels"].get("job") == ForeignExporter.JOB], everything

        message = stack.smtp.wait_for(is_email_about("FIRING", FAILING), EMAIL_TIMEOUT, f"the {ALERT} email of {FAILING}")
        assert message["Subject"] == f"[FIRING:1] {ALERT} ({FAILING}): Prediction failure rate above 10%"
        assert f"100% of predictions ({FAILING}) failed" in text_body(message)
        assert [m["Subject"] for m in stack.smtp.messages() if ALERT in m["Subject"]] == [message["Subject"]]
    except Exception:
        if stack is not None:
            print(diagnostics(stack))
        raise
    finally:
        foreign.stop()


def test_failures_before_prometheus_first_scrapes_the_collector_still_fire_the_alert(
    start_collector, start_proxy, start_alerting
):
    """Start timestamps (created-timestamp-zero-ingestion): a model that fails 10 times before
    Prometheus has ever scraped, as when a demo's burst goes out first. The collector's exporter
    serves each counter's start time in the protobuf format Prometheus then asks for first;
    Prometheus stores a 0 there, before the first scraped value, so increase() counts the 10
    and the failure ratio is 100%, where without it the first sample, 10, would be rate()'s
    starting point and the ratio NaN for as long as nothing more failed."""
    collector = start_collector()
    proxy = start_proxy(f"http://127.0.0.1:{free_port()}", env={**otlp_env(collector), "OTEL_SERVICE_NAME": FAILING})
    assert [proxy.post(json=SEED_EXAMPLE).status_code for _ in range(10)] == [503] * 10
    poll(lambda: re.search(rf'^prediction_failure_total{{[^}}]*job="{FAILING}"[^}}]*}} 10$', collector.metrics_text(), re.M),
         ALERT_TIMEOUT, "the collector to export the 10 failures")
    stack = None
    try:
        stack = start_alerting(f"127.0.0.1:{collector.ports.metrics}", "otel-collector")
        prometheus = stack.prometheus
        poll(lambda: (scalar(prometheus, f'count_over_time(prediction_failure_total{{job="{FAILING}"}}[5m])') or 0) >= 3,
             ALERT_TIMEOUT, "two scrapes of the failures and the 0 stored before them")
        [series] = prometheus.query(f'prediction_failure_total{{job="{FAILING}"}}[5m]')
        assert [float(value) for _, value in series["values"][:2]] == [0, 10], series["values"]
        assert math.isclose(scalar(prometheus, f'increase(prediction_failure_total{{job="{FAILING}"}}[5m])'), 10,
                            rel_tol=0.1)
        poll(lambda: alert_state(prometheus) == "firing", ALERT_TIMEOUT, f"{ALERT} to fire")
        stack.smtp.wait_for(is_email_about("FIRING", FAILING), EMAIL_TIMEOUT, f"the {ALERT} email")
    except Exception:
        if stack is not None:
            print(diagnostics(stack))
        raise
