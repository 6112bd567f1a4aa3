"""From the latency alert to the traces, end to end, with real components only.

A real MLflow server serves the tunable model behind the proxy; the proxy sends OTLP to our
collector, which keeps the slow traces in Jaeger and exports the contract to Prometheus (the
committed rules, rendered with this test's Jaeger address and a short ``for``), which alerts
through Alertmanager to an SMTP sink. The model is made slow: HighPredictionLatency fires, its
description says how much of the p95 the model took, and the link in its annotations, followed
as it is, returns from Jaeger exactly the slow traces of the alert's window; the email shows it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from alerting_stack import poll, start_alerting_stack, text_body
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.render.prometheus_rules import rule_files
from support import otlp_env, tunable_payload

ALERT = "HighPredictionLatency"
SLOW_S = 2.2
SLOW_REQUESTS = 6

pytestmark = pytest.mark.slow


def test_the_latency_alert_links_the_slow_traces_of_its_window_and_says_how_much_was_the_model(
    tunable_mlflow, start_collector, start_proxy, start_jaeger, tmp_path
):
    jaeger = start_jaeger()
    collector = start_collector(jaeger, OTELCOL_TRACES_SAMPLE_PERCENT="0", OTELCOL_TRACES_DECISION_WAIT="1s")
    proxy = start_proxy(tunable_mlflow.url, env=otlp_env(collector))
    thresholds = dataclasses.replace(THRESHOLDS, jaeger_url=jaeger.url)  # the link leads to this Jaeger
    stack = start_alerting_stack(tmp_path, f"127.0.0.1:{collector.ports.metrics}",
                                 rules=rule_files(thresholds, for_overrides={ALERT: "2s"}))
    prometheus, smtp = stack.prometheus, stack.smtp
    try:
        # One fast request makes the series; once Prometheus has it, rate() sees every later one.
        assert proxy.post(json=tunable_payload()).status_code == 200
        poll(lambda: prometheus.query('http_request_duration_seconds_count{job="inferwatch"}'), 30, "the series")
        began = time.time()
        with ThreadPoolExecutor(3) as pool:
            slow = list(pool.map(lambda _: proxy.post(json=tunable_payload(delay_s=SLOW_S)), range(SLOW_REQUESTS)))
        assert {r.status_code for r in slow} == {200}
        slow_traces = {r.headers["traceparent"].split("-")[1] for r in slow}

        alert = poll(lambda: next((a for a in prometheus.alerts(ALERT) if a["state"] == "firing"), None), 60,
                     f"{ALERT} to fire")
        annotations = alert["annotations"]
        # Every request and every MLflow call lies in the (2, 2.5] bucket: both p95s are interpolated there.
        model = re.search(r"Model time: the MLflow call's p95 is ([0-9.]+)s, ([0-9.]+)% of the request p95; "
                          r"the rest is proxy time\.", annotations["description"])
        assert model, annotations["description"]
        assert 2 < float(model.group(1)) <= 2.5 and 90 < float(model.group(2)) <= 100, annotations["description"]

        link = annotations["traces_api"]
        assert link.startswith(f"{jaeger.url}/api/traces?service=inferwatch&minDuration=2s&start=")
        window = dict(part.split("=", 1) for part in link.split("?", 1)[1].split("&"))
        assert int(window["start"]) <= began * 1e6 <= time.time() * 1e6 and int(window["end"]) - int(window["start"]) == 300e6

        def linked_traces():
            data = requests.get(link, timeout=10).json()["data"]
            return data if {t["traceID"] for t in data} >= slow_traces else None

        linked = poll(linked_traces, 30, "the slow traces behind the alert's link")
        assert {t["traceID"] for t in linked} == slow_traces, "the link returns exactly the window's slow traces"
        for found in linked:
            [server] = [s for s in found["spans"] if s["operationName"] == "POST /predict"]
            assert server["duration"] >= SLOW_S * 1e6
        assert annotations["traces"].startswith(f"{jaeger.url}/search?service=inferwatch&minDuration=2s&lookback=custom")

        email = smtp.wait_for(lambda m: ALERT in m["Subject"], 30, f"the {ALERT} email")
        body = text_body(email)
        assert f"Trace API:   {link}" in body and f"Slow traces: {annotations['traces']}" in body, body
        assert "inferwatch traces --slow" in body
    finally:
        stack.stop()
