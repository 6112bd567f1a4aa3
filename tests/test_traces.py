"""Traces: the Flask server span, its requests client span around the MLflow call, traceparent upstream."""

from __future__ import annotations

import os
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask
import pytest
import werkzeug.wrappers
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from inferwatch.proxy.app import close_app, create_app
from inferwatch.contract.spans import OUTCOME as ATTR_OUTCOME
from inferwatch.contract.spans import ROW_COUNT as ATTR_ROW_COUNT
from inferwatch.proxy.config import Settings
from inferwatch.proxy.telemetry import setup_telemetry
from inferwatch.stack.demo_model import SEED_EXAMPLE


class HeaderRecordingRelay(ThreadingHTTPServer):
    """Passes requests through to the real MLflow server and remembers the headers it was sent."""

    def __init__(self, target: str):
        self.seen: list[dict[str, str]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                relay.seen.append({k.lower(): v for k, v in self.headers.items()})
                forwarded = urllib.request.Request(
                    target + self.path, data=body, headers={"Content-Type": self.headers["Content-Type"]}
                )
                try:
                    answer = urllib.request.urlopen(forwarded, timeout=10)
                except urllib.error.HTTPError as error:
                    answer = error
                payload = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.headers["Content-Type"])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def traced(mlflow_server):
    relay = HeaderRecordingRelay(mlflow_server.url)
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(span_processors=[SimpleSpanProcessor(exporter)], environ={})
    app = create_app(Settings(upstream=relay.url), telemetry, start_sampler=False)
    yield app.test_client(), exporter, relay
    close_app(app)
    relay.shutdown()
    relay.server_close()


def spans_by_kind(exporter):
    spans = exporter.get_finished_spans()
    return [s for s in spans if s.kind == SpanKind.SERVER], [s for s in spans if s.kind == SpanKind.CLIENT]


def test_server_span_has_the_mlflow_call_as_child_and_traceparent_goes_upstream(traced):
    client, exporter, relay = traced
    response = client.post("/predict", json=SEED_EXAMPLE, headers={"X-Forwarded-For": "6.6.6.6"})
    assert response.status_code == 200

    (server,), (upstream,) = spans_by_kind(exporter)
    assert server.name == "POST /predict"
    assert upstream.name == "POST"
    assert upstream.context.trace_id == server.context.trace_id
    assert upstream.parent.span_id == server.context.span_id
    assert server.attributes["http.route"] == "/predict"
    assert server.attributes[ATTR_ROW_COUNT] == 1
    assert server.attributes[ATTR_OUTCOME] == "success"
    assert upstream.attributes["http.response.status_code"] == 200

    (headers,) = relay.seen
    version, trace_id, parent_id, _flags = headers["traceparent"].split("-")
    assert trace_id == format(server.context.trace_id, "032x")
    assert parent_id == format(upstream.context.span_id, "016x")
    assert "x-forwarded-for" not in headers  # client forwarding headers are not passed on


def test_an_incoming_traceparent_continues_the_callers_trace(traced):
    client, exporter, _relay = traced
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    client.post("/predict", json=SEED_EXAMPLE, headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"})
    (server,), _ = spans_by_kind(exporter)
    assert format(server.context.trace_id, "032x") == caller_trace


def test_a_failed_prediction_is_an_error_on_the_span(traced):
    client, exporter, _relay = traced
    rejected = {"dataframe_split": {"columns": ["Pregnancies"], "data": [[1.0]]}}
    assert client.post("/predict", json=rejected).status_code == 400
    (server,), (upstream,) = spans_by_kind(exporter)
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "model_rejected"
    assert upstream.status.status_code == StatusCode.ERROR  # a 4xx answer is an error for the client span


def test_input_the_proxy_refuses_itself_makes_no_upstream_span(traced):
    client, exporter, relay = traced
    nested = b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert client.post("/predict", data=nested, content_type="application/json").status_code == 400
    (server,), clients = spans_by_kind(exporter)
    assert clients == [] and relay.seen == []
    assert server.attributes["error.type"] == "invalid_json"


def test_the_stable_http_conventions_are_chosen_from_environ_without_writing_the_process_environment(monkeypatch):
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
        _OpenTelemetryStabilitySignalType as Signal,
        _StabilityMode as Mode,
    )

    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    telemetry = setup_telemetry(environ={"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup,gen_ai_latest_experimental"})
    try:
        assert "OTEL_SEMCONV_STABILITY_OPT_IN" not in os.environ
        mode = Stability._get_opentelemetry_stability_opt_in_mode
        assert mode(Signal.HTTP) is Mode.HTTP  # the contract's names, never the old ones beside them
        assert mode(Signal.GEN_AI) is Mode.GEN_AI_LATEST_EXPERIMENTAL
    finally:
        telemetry.shutdown()
        setup_telemetry(environ={}).shutdown()
    assert Stability._get_opentelemetry_stability_opt_in_mode(Signal.GEN_AI) is Mode.DEFAULT


@pytest.mark.parametrize("path, query", [("/predict", ""), ("/invocations", "a=1&b=%20x+y"), ("/caf%C3%A9/a b", "q=é")])
def test_the_url_the_flask_instrumentation_reads_is_werkzeugs_own(traced, path, query):
    app = traced[0].application
    for _ in range(2):  # the second time from the cache
        with app.test_request_context(path, query_string=query, base_url="http://proxy.example:8000/root"):
            assert flask.request.url == werkzeug.wrappers.Request(flask.request.environ).url
