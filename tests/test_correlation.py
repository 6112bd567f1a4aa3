"""Correlation on every answer: traceparent and X-Request-Id, on the server span and in the log line."""

from __future__ import annotations

import json
import time

import pytest
import requests
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.config import Settings
from inferwatch.contract.spans import REQUEST_ID as ATTR_REQUEST_ID
from inferwatch.proxy.correlation import request_id
from inferwatch.proxy.telemetry import setup_telemetry
from inferwatch.stack.demo_model import SEED_EXAMPLE


@pytest.fixture
def traced_app(mlflow_server):
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(span_processors=[SimpleSpanProcessor(exporter)], environ={})
    app = create_app(Settings(upstream=mlflow_server.url), telemetry, start_sampler=False)
    yield app.test_client(), exporter
    close_app(app)


def server_span(exporter):
    [span] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    return span


@pytest.mark.parametrize("path, body, status", [
    ("/predict", SEED_EXAMPLE, 200),
    ("/predict", {"nothing": 1}, 400),
    ("/no/such/route", SEED_EXAMPLE, 404),
])
def test_every_answer_carries_the_server_spans_traceparent_and_a_fresh_request_id(traced_app, path, body, status):
    client, exporter = traced_app
    response = client.post(path, json=body)
    assert response.status_code == status
    span = server_span(exporter)
    flags = span.context.trace_flags
    assert flags.sampled
    assert response.headers["traceparent"] == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{flags:02x}"
    generated = response.headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert span.attributes[ATTR_REQUEST_ID] == generated


def test_a_well_formed_client_request_id_is_echoed_and_the_callers_trace_continues(traced_app):
    client, exporter = traced_app
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = client.post("/predict", json=SEED_EXAMPLE, headers={
        "X-Request-Id": "req-2026.12.01_abc:42", "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"})
    assert response.headers["X-Request-Id"] == "req-2026.12.01_abc:42"
    assert response.headers["traceparent"].split("-")[1] == caller_trace
    assert server_span(exporter).attributes[ATTR_REQUEST_ID] == "req-2026.12.01_abc:42"


@pytest.mark.parametrize("hostile", [
    "x" * 129,                       # oversized
    "two words",                     # a space
    'quote"d',                       # a quote
    "evil\u00e9",                    # not ASCII
    "a,b",                           # two headers merged into one
    "<script>alert(1)</script>",
])
def test_a_malformed_or_oversized_client_request_id_is_replaced_never_echoed(traced_app, hostile):
    client, exporter = traced_app
    response = client.post("/predict", json=SEED_EXAMPLE, headers={"X-Request-Id": hostile})
    replaced = response.headers["X-Request-Id"]
    assert replaced != hostile and len(replaced) == 32
    assert server_span(exporter).attributes[ATTR_REQUEST_ID] == replaced


def test_request_ids_are_unique():
    assert len({request_id(None) for _ in range(1000)}) == 1000
    assert request_id("a" * 128) == "a" * 128


def test_the_real_proxy_logs_the_request_id_and_trace_context_it_answered(proxy):
    answers = [proxy.post(json=SEED_EXAMPLE, headers={"X-Request-Id": "client-id-1"}),
               proxy.post(json=SEED_EXAMPLE, headers={"X-Request-Id": "bad id"}),
               requests.get(proxy.url + "/unknown", timeout=5)]
    logged = []
    for _ in range(50):
        logged = [json.loads(line) for line in proxy.log_lines() if '"inferwatch.access"' in line]
        if len(logged) == 3:
            break
        time.sleep(0.1)
    assert len(logged) == 3, logged
    for answer, line in zip(answers, logged):
        _version, trace_id, span_id, _flags = answer.headers["traceparent"].split("-")
        assert (line["request_id"], line["trace_id"], line["span_id"]) == (answer.headers["X-Request-Id"], trace_id, span_id)
    assert logged[0]["request_id"] == "client-id-1" and logged[1]["request_id"] != "bad id"
    health = requests.get(proxy.url + "/healthz", timeout=5)  # answered in front of the app: no span
    assert "traceparent" not in health.headers
