"""The seed user's own prometheus.yml, verbatim, with the committed rule files: alerts and dashboard work.

The seed's README ships this prometheus.yml: job ``ml_model_exporter``, a 5 s scrape, the proxy
scraped directly, no evaluation interval (Prometheus's default, 1 minute) and no rule files.
The test adds only what it must: the committed rule files, and a free port instead of 8000 (and
tells the proxy its model's directory, whose profile the model-quality panels read). In
front of a real MLflow model server, 30 invalid-JSON requests (every prediction failing) put
HighPredictionFailureRate in pending (its ``for`` is 2 minutes: pending is the proof, firing
would only add waiting); then, with predictions and bad requests flowing as while someone looks
at the dashboard (and the predictions' true labels arriving), every dashboard query, variable and
Grafana rule query returns data, but the regression panel's (the seed's model is a classifier) and
the estimated performance's (it answers classes, not class probabilities).

The first rule evaluation after the failures are scraped comes within the 1 minute interval, so
this test takes about a minute: it is the user's configuration, timings included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from alerting_stack import PrometheusServer, poll, start_prometheus
from dashboard_queries import DashboardQueries, grafana_rules, panel_expressions, rule_query
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.render.panels import genai as genai_row
from inferwatch.stack.demo_model import DEMO_MODEL_NAME, DEMO_MODEL_VERSION, SEED_EXAMPLE
from support import Proxy, start_proxy_process, stop_proxy

# The seed README's prometheus.yml, character for character.
SEED_PROMETHEUS_YML = """\
global:
  scrape_interval: 5s

scrape_configs:
  - job_name: "ml_model_exporter"
    static_configs:
    - targets: ["127.0.0.1:8000"]
"""
SEED_JOB = "ml_model_exporter"
FAILURES = 30
# A scrape (5 s), then the rule groups' next evaluation (at most 1 minute), with room to spare.
EVALUATED_TIMEOUT = 100.0
# The dashboard check's background traffic: a prediction and a bad request this often, at most
# this long (the check ends well before).
TRAFFIC_PERIOD_S = 0.5
TRAFFIC_MAX_S = 3 * EVALUATED_TIMEOUT

pytestmark = pytest.mark.slow


@dataclass
class SeedStack:
    proxy: Proxy
    prometheus: PrometheusServer


def send_invalid_json(proxy: Proxy, prometheus: PrometheusServer, count: int) -> None:
    """``count`` invalid-JSON predictions, scraped. The first goes alone: the 400 answers' HTTP
    series are born with it, and rate() cannot see the increase that created a series."""
    scraped = scraped_failures(prometheus)
    for sent in range(count):
        assert proxy.post(data="{not json", headers={"Content-Type": "application/json"}).status_code == 400
        if sent == 0:
            poll(lambda: scraped_failures(prometheus) == scraped + 1, 30, "Prometheus to scrape the first failure")
    poll(lambda: scraped_failures(prometheus) == scraped + count, 30, f"Prometheus to scrape {count} failures")


@contextmanager
def traffic(proxy: Proxy) -> Iterator[None]:
    """Predictions and invalid JSON in the background, bounded in time, while the block runs: the
    panels' rate windows are a minute, the recorded series wait for the next evaluation."""
    stop = threading.Event()
    answers: list[int] = []

    def send() -> None:
        deadline = time.monotonic() + TRAFFIC_MAX_S
        while not stop.wait(TRAFFIC_PERIOD_S) and time.monotonic() < deadline:
            prediction = proxy.post(json=SEED_EXAMPLE)
            answers.append(prediction.status_code)
            if token := prediction.headers.get(TOKEN_HEADER):
                answers.append(proxy.post("/feedback", json={"token": token, "label": 1}).status_code)
            answers.append(proxy.post(data="{not json", headers={"Content-Type": "application/json"}).status_code)

    sender = threading.Thread(target=send, name="seed-traffic", daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(10)
    assert set(answers) <= {200, 400}, answers


def scraped_failures(prometheus: PrometheusServer) -> float:
    [sample] = prometheus.query(f'prediction_failure_total{{job="{SEED_JOB}"}}')
    return float(sample["value"][1])


@pytest.fixture(scope="module")
def seed(mlflow_server, demo_model, tmp_path_factory):
    """A proxy in front of the session's MLflow, Prometheus with the seed's file and our rules,
    after 30 invalid-JSON predictions have been scraped."""
    workdir = tmp_path_factory.mktemp("seed-config")
    # The model's directory gives the proxy its name, version and reference profile (the
    # quality panels' data); the Prometheus side stays the seed's own.
    proxy = start_proxy_process(mlflow_server.url, workdir, model_dir=str(demo_model), log_level="WARNING")
    prometheus = None
    try:
        prometheus = start_prometheus(workdir, SEED_PROMETHEUS_YML.replace("127.0.0.1:8000", f"127.0.0.1:{proxy.port}")
                                      + "\nrule_files:\n  - rules/*.yml\n")
        # rate() needs the counters at 0 before the failures.
        poll(lambda: prometheus.query(f'prediction_failure_total{{job="{SEED_JOB}"}} == 0'), 30,
             "Prometheus to scrape the counters at 0")
        send_invalid_json(proxy, prometheus, FAILURES)
        yield SeedStack(proxy, prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        stop_proxy(proxy)


def test_every_prediction_failing_puts_the_failure_rate_alert_in_pending_naming_the_seeds_job(seed):
    prometheus = seed.prometheus
    alerts = poll(lambda: prometheus.alerts("HighPredictionFailureRate"), EVALUATED_TIMEOUT,
                  "HighPredictionFailureRate to go pending")
    [alert] = alerts
    assert alert["state"] == "pending", alert
    assert alert["labels"] == {"alertname": "HighPredictionFailureRate", "job": SEED_JOB,
                               "model": DEMO_MODEL_NAME, "model_version": DEMO_MODEL_VERSION,
                               "severity": "critical", "component": "prediction"}
    assert float(alert["value"]) == 1.0
    assert f"100% of predictions ({SEED_JOB}) failed" in alert["annotations"]["description"]
    # A group evaluated before Prometheus's first scrape may have put InferwatchMetricsAbsent in
    # pending; its next evaluation, with the series there, clears it.
    poll(lambda: prometheus.alerts("InferwatchMetricsAbsent") == [], EVALUATED_TIMEOUT,
         "InferwatchMetricsAbsent to stay or turn inactive")
    assert prometheus.alerts("InferwatchDown") == []


def test_every_dashboard_query_variable_and_grafana_rule_query_returns_data(seed):
    queries = DashboardQueries(seed.prometheus)
    expressions = [*panel_expressions(queries.board),
                   *((rule["title"], rule_query(rule)) for rule in grafana_rules())]
    # A classifier's feedback has no error to measure: tests/test_grafana.py shows it for a regressor.
    # The seed's classifier answers classes, not class probabilities: nothing to estimate, and no
    # per-class feedback counts (tests/test_grafana.py shows them for one answering predict_proba).
    without_data = ("Regression error from feedback", "Estimated performance against the reference",
                    "Realized performance from feedback [B]", "Realized performance from feedback [C]",
                    "Realized performance from feedback [D]", "Estimated minus realized accuracy")
    regression = [(where, expr) for where, expr in expressions if where.startswith(without_data)]
    assert len(regression) == 3 + 5 + 3 + 1
    # Nor is a tabular model a GenAI one: tests/test_grafana.py and the browser test show that row
    # with a GenAI model behind a proxy.
    genai_titles = tuple(panel.title for panel in genai_row(THRESHOLDS).panels)
    genai = [(where, expr) for where, expr in expressions if where.startswith(genai_titles)]
    assert len(genai) == 9
    with traffic(seed.proxy):
        assert queries.wait_for_data([e for e in expressions if e not in regression + genai], EVALUATED_TIMEOUT) == {}
    assert {where: queries.problem(expr) for where, expr in regression} == {where: "no data" for where, _ in regression}
    values = queries.resolve_variables()
    assert values["job"] == [SEED_JOB] and len(values["instance"]) == 1 and "/predict" in values["route"], values
