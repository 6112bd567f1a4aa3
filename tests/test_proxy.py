"""The proxy in front of a real MLflow model server: formats, error paths, health endpoints."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from inferwatch.stack.demo_model import PIMA_COLUMNS, SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from support import MlflowServer, total, tunable_payload

ROW = [0.1, 1.2, -0.3, 0.4, -0.5, 0.6, -0.7, 0.8]
RECORD = dict(zip(PIMA_COLUMNS, ROW))
CSV_BODY = ",".join(PIMA_COLUMNS) + "\n" + ",".join(map(str, ROW)) + "\n" + ",".join(map(str, ROW)) + "\n"

MLFLOW_FORMATS = {
    "dataframe_split": ({"dataframe_split": {"columns": list(PIMA_COLUMNS), "data": [ROW, ROW]}}, 2),
    "dataframe_records": ({"dataframe_records": [RECORD, RECORD, RECORD]}, 3),
    "instances": ({"instances": [RECORD]}, 1),
    "inputs": ({"inputs": [RECORD, RECORD]}, 2),
}


def error_of(response) -> dict:
    """The proxy's one error shape, from a process's answer (requests) or an in-process one (Flask)."""
    assert response.headers["Content-Type"] == "application/json"
    body = response.json() if callable(response.json) else response.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


@pytest.mark.parametrize("route", ["/predict", "/invocations"])
@pytest.mark.parametrize("name", sorted(MLFLOW_FORMATS))
def test_every_mlflow_json_format_gets_the_models_answer(app_proxy, mlflow_server, route, name):
    payload, rows = MLFLOW_FORMATS[name]
    direct = requests.post(mlflow_server.url + "/invocations", json=payload, timeout=10)
    through_proxy = app_proxy.post(route, json=payload)
    assert through_proxy.status_code == 200
    assert through_proxy.json == direct.json()
    assert len(through_proxy.json["predictions"]) == rows


def test_csv_passes_through(app_proxy):
    response = app_proxy.post(data=CSV_BODY, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200
    assert len(response.json["predictions"]) == 2


def test_the_seed_example_payload_gets_a_prediction(proxy):
    """Through the process: the plainest request on the real edge."""
    response = proxy.post(json=SEED_EXAMPLE)
    assert response.status_code == 200
    assert response.json()["predictions"] in ([0], [1])


def test_model_rejection_keeps_mlflow_status_and_body(app_proxy):
    response = app_proxy.post(json={"dataframe_split": {"columns": ["Pregnancies"], "data": [[1.0]]}})
    assert response.status_code == 400
    body = response.json
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "missing inputs" in body["message"]
    samples = app_proxy.metrics()
    assert total(samples, "prediction_failure_by_reason_total", reason="model_rejected") == 1


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": b"", "headers": {"Content-Type": "application/json"}}, 400, "invalid_input"),
        ({"data": b"hello"}, 415, "unsupported_media_type"),
        ({"data": b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": {"Content-Type": "application/json"}},
         400, "invalid_json"),
        ({"data": b"x" * 20_000, "headers": {"Content-Type": "text/csv"}}, 413, "payload_too_large"),
    ],
    ids=["empty", "no-type", "nested-too-deep", "oversized"],
)
def test_what_the_proxy_refuses_itself_is_answered_and_counted_and_never_reaches_the_model(start_app, kwargs, status,
                                                                                        code):
    # The upstream is a closed port: had the body been forwarded, the answer would be a 503.
    proxy = start_app(f"http://127.0.0.1:{free_port()}", max_body_bytes=15_000)
    response = proxy.post(**kwargs)
    assert response.status_code == status
    assert error_of(response)["code"] == code
    samples = proxy.metrics()
    assert total(samples, "prediction_failure_total") == 1
    assert total(samples, "prediction_failure_by_reason_total", reason=code) == 1
    assert total(samples, "http_requests_total", status=str(status)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"json": [1, 2, 3]},
        {"json": {"rows": [[1]]}},
        {"data": b"a=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"json": {"messages": [{"role": "user", "content": "hi"}]}},
    ],
    ids=["malformed", "array", "no-input-key", "form", "chat"],
)
def test_a_body_the_proxy_does_not_recognise_goes_to_the_model_which_decides(start_app, kwargs):
    proxy = start_app(f"http://127.0.0.1:{free_port()}")
    response = proxy.post(**kwargs)
    assert response.status_code == 503  # it was forwarded: the closed port answered
    assert total(proxy.metrics(), "prediction_failure_by_reason_total", reason="upstream_unavailable") == 1


@pytest.mark.slow  # starts an MLflow model server of its own, kills it and starts it again
def test_model_server_down_is_503_and_recovers_without_restarting_the_proxy(demo_model, start_proxy, tmp_path):
    server = MlflowServer(demo_model, free_port(), tmp_path / "mlflow.log").start()
    proxy = start_proxy(server.url)
    try:
        assert proxy.post(json=SEED_EXAMPLE).status_code == 200
        server.process.kill()
        down = proxy.post(json=SEED_EXAMPLE)
        assert down.status_code == 503
        assert error_of(down)["code"] == "upstream_unavailable"
        assert server.url not in down.text and "127.0.0.1" not in down.text
        assert requests.get(proxy.url + "/readyz", timeout=5).status_code == 503
        server.start()
        assert proxy.post(json=SEED_EXAMPLE).status_code == 200
        assert requests.get(proxy.url + "/readyz", timeout=5).status_code == 200
    finally:
        server.stop()
    samples = proxy.metrics()
    assert total(samples, "prediction_success_total") == 2
    assert total(samples, "prediction_failure_by_reason_total", reason="upstream_unavailable") == 1
    # The MLflow call that got no answer is model time too, under status="none".
    assert total(samples, "upstream_request_duration_seconds_count", status="200") == 2
    assert total(samples, "upstream_request_duration_seconds_count", status="none") == 1


def test_slow_model_beyond_the_read_timeout_is_504(tunable_mlflow, start_app):
    proxy = start_app(tunable_mlflow.url, read_timeout=0.5)
    response = proxy.post(json=tunable_payload(delay_s=1.5))
    assert response.status_code == 504
    assert error_of(response)["code"] == "upstream_timeout"
    upstream = total(proxy.metrics(), "upstream_request_duration_seconds_sum", status="none")
    assert 0.5 <= upstream < 1.5, "the call that timed out counts its 0.5 s wait as model time"
    # The proxy is still healthy and the connection pool still works afterwards.
    assert proxy.post(json=tunable_payload(delay_s=0.0)).status_code == 200
    samples = proxy.metrics()
    assert total(samples, "prediction_failure_by_reason_total", reason="upstream_timeout") == 1
    assert total(samples, "active_requests") == 0


def test_model_exception_is_400_without_the_stack_trace(tunable_mlflow, start_app):
    proxy = start_app(tunable_mlflow.url)
    direct = requests.post(tunable_mlflow.url + "/invocations", json=tunable_payload(fail=True), timeout=10)
    assert "stack_trace" in direct.json()  # what MLflow sends, and the proxy must drop
    response = proxy.post(json=tunable_payload(fail=True))
    assert response.status_code == 400
    body = response.json
    assert "stack_trace" not in body and "Traceback" not in response.text
    assert body["error_code"] == direct.json()["error_code"]


class FakeBrokenUpstream(ThreadingHTTPServer):
    """A fake model server for answers real MLflow does not give: an HTML 5xx, a text 200 or 404."""

    def __init__(self, status: int, body: bytes, content_type: str):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.mark.parametrize(
    "status, body, content_type",
    [
        (500, b"<html>Internal Server Error at http://10.0.0.7/</html>", "text/html"),
        (502, b"<html>Bad Gateway at http://10.0.0.7/</html>", "text/html"),
    ],
    ids=["500", "502"],
)
def test_an_upstream_failure_is_502_and_leaks_nothing(start_app, status, body, content_type):
    upstream = FakeBrokenUpstream(status, body, content_type)
    try:
        proxy = start_app(upstream.url)
        response = proxy.post(json=SEED_EXAMPLE)
    finally:
        upstream.shutdown()
        upstream.server_close()
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_error"
    assert "10.0.0.7" not in response.text and upstream.url not in response.text
    assert total(proxy.metrics(), "prediction_failure_by_reason_total", reason="upstream_error") == 1


def test_a_non_json_answer_reaches_the_client_as_the_model_server_gave_it(start_app):
    upstream = FakeBrokenUpstream(200, b"predictions: 1", "text/plain")
    try:
        proxy = start_app(upstream.url)
        response = proxy.post(json=SEED_EXAMPLE)
    finally:
        upstream.shutdown()
        upstream.server_close()
    assert (response.status_code, response.headers["Content-Type"], response.data) == (
        200, "text/plain", b"predictions: 1")
    samples = proxy.metrics()
    assert total(samples, "prediction_success_total") == 1
    assert total(samples, "model_input_unreadable_total", format="answer") == 1


def test_a_text_error_keeps_its_status_and_message_in_the_proxys_json_shape(start_app):
    upstream = FakeBrokenUpstream(404, b"not found\n", "text/plain")
    try:
        proxy = start_app(upstream.url)
        response = proxy.post(json=SEED_EXAMPLE)
    finally:
        upstream.shutdown()
        upstream.server_close()
    assert response.status_code == 404
    assert error_of(response) == {"code": "model_rejected", "message": "not found"}
    assert total(proxy.metrics(), "prediction_failure_by_reason_total", reason="model_rejected") == 1


def test_health_and_readiness(app_proxy, start_app):
    assert app_proxy.get("/healthz").json == {"status": "ok"}
    assert app_proxy.get("/readyz").status_code == 200
    orphan = start_app(f"http://127.0.0.1:{free_port()}")
    assert orphan.get("/healthz").status_code == 200
    not_ready = orphan.get("/readyz")
    assert not_ready.status_code == 503
    assert error_of(not_ready)["code"] == "not_ready"


def test_unknown_routes_and_methods_get_json_errors(app_proxy):
    assert error_of(app_proxy.get("/nope"))["code"] == "not_found"
    assert error_of(app_proxy.get("/predict"))["code"] == "method_not_allowed"
    assert error_of(app_proxy.post("/metrics"))["code"] == "method_not_allowed"


def test_one_json_log_line_per_request(proxy):
    proxy.post(json=SEED_EXAMPLE)
    proxy.post(data=b"{", headers={"Content-Type": "application/json"})
    requests.get(proxy.url + "/metrics", timeout=5)
    lines = []
    for _ in range(50):  # the log is written by a background thread
        lines = [json.loads(line) for line in proxy.log_lines() if '"inferwatch.access"' in line]
        if len(lines) >= 2:
            break
        threading.Event().wait(0.05)
    assert [(line["route"], line["status"], line["outcome"]) for line in lines] == [
        ("/predict", 200, "success"),
        ("/predict", 400, "invalid_json"),
    ]
    for line in lines:
        assert line["method"] == "POST" and line["duration_s"] > 0
        assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
        assert line["time"].endswith("Z")
