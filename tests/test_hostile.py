"""Hostile clients at the HTTP edge: bodies that break parsers, oversized and cut-off bodies, header floods.

Every request goes over a real socket to a real ``inferwatch serve`` (uWSGI's HTTP router in front
of the app) in front of the real MLflow model server. Each case checks the answer (status, the one
JSON error shape) and that the prediction was counted exactly once, as a success or as a failure
with its reason, so the counters never disagree with the statuses.

The one fake is :class:`FakeExplodingUpstream`, an upstream client that raises an error the
proxy cannot foresee, which no real component produces on demand: it proves the catch-all.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.config import Settings
from inferwatch.proxy.telemetry import setup_telemetry
from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import parse_samples, total

LIMIT = 1024 * 1024
SEED = json.dumps(SEED_EXAMPLE)
FIRST_VALUE = json.dumps(SEED_EXAMPLE["dataframe_split"]["data"][0][0])
JSON_TYPE = {"Content-Type": "application/json"}


def with_first_value(literal: str) -> bytes:
    """The seed payload with its first feature value replaced by ``literal``, as written."""
    return SEED.replace(FIRST_VALUE, literal, 1).encode()


def chunks(body: bytes, size: int = 1000):
    """A generator body: requests sends it chunked, without Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


# name: (body, headers, expected status, expected error code or None, expected outcome)
BODY_SHAPES = {
    "nested 5,000 deep": (b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON_TYPE, 400, "invalid_json", "invalid_json"),
    "nested 5,000 deep in inputs": (b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}", JSON_TYPE, 400,
                                    "invalid_json", "invalid_json"),
    "an integer of 5,000 digits": (with_first_value("1" * 5000), JSON_TYPE, 400, "invalid_json", "invalid_json"),
    "a fraction of 100,000 digits": (with_first_value("0." + "1" * 100_000), JSON_TYPE, 200, None, "success"),
    "1e400 (overflows to infinity)": (with_first_value("1e400"), JSON_TYPE, 400, None, "model_rejected"),
    "a NaN literal": (with_first_value("NaN"), JSON_TYPE, 400, None, "model_rejected"),
    "an Infinity literal": (with_first_value("-Infinity"), JSON_TYPE, 400, None, "model_rejected"),
    "duplicate keys, the last one valid": (b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}, ' + SEED[1:].encode(),
                                           JSON_TYPE, 200, None, "success"),
    "a UTF-8 byte order mark": (b"\xef\xbb\xbf" + SEED.encode(), JSON_TYPE, 200, None, "success"),
    "charset=utf-16 (MLflow reads UTF-8 only: its 415)": (SEED.encode("utf-16"),
                                                          {"Content-Type": "application/json; charset=utf-16"}, 415,
                                                          "unsupported_media_type", "unsupported_media_type"),
    "UTF-32 without a charset": (SEED.encode("utf-32"), JSON_TYPE, 200, None, "success"),
    "charset=utf-8 with invalid bytes (MLflow's 400)": (b'{"inputs": "\xff\xfe"}',
                                                        {"Content-Type": "application/json; charset=utf-8"},
                                                        400, None, "invalid_json"),
    "an unknown charset": (SEED.encode(), {"Content-Type": "application/json; charset=x-klingon"}, 415,
                           "unsupported_media_type", "unsupported_media_type"),
    "chunked, without Content-Length": (chunks(SEED.encode(), 64), JSON_TYPE, 200, None, "success"),
    "chunked, over the limit": (chunks(b" " * (LIMIT + 1) + SEED.encode(), 65536), JSON_TYPE, 413,
                                "payload_too_large", "payload_too_large"),
    "Content-Length and chunked both": (chunks(SEED.encode()), {**JSON_TYPE, "Content-Length": str(len(SEED))}, 400,
                                        "invalid_input", "invalid_input"),
    "a transfer coding other than chunked": (SEED.encode(), {**JSON_TYPE, "Transfer-Encoding": "gzip"}, 400,
                                             "invalid_input", "invalid_input"),
}


def percentile_ms(seconds: list[float], q: float) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_error_shape(response: requests.Response, code: str) -> None:
    assert response.headers["Content-Type"] == "application/json", response.headers
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body


def outcomes(samples: dict) -> dict[str, float]:
    """Predictions counted so far by outcome: ``success`` and each failure reason."""
    counted = {"success": total(samples, "prediction_success_total")}
    for (name, labels), value in samples.items():
        if name == "prediction_failure_by_reason_total":
            counted[dict(labels)["reason"]] = value
    return counted


def test_bodies_that_break_parsers_are_answered_and_counted_exactly_once(proxy):
    before = outcomes(proxy.metrics())
    for name, (body, headers, status, code, outcome) in BODY_SHAPES.items():
        response = requests.post(proxy.url + "/predict", data=body, headers=headers, timeout=30)
        assert response.status_code == status, (name, response.text[:300])
        if code is not None:
            check_error_shape(response, code)
        elif status != 200:
            assert "stack_trace" not in response.json(), name  # MLflow's own error, less its trace
        after = outcomes(proxy.metrics())
        changed = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
        assert changed == {outcome: 1}, (name, changed)
        before = after
    samples = proxy.metrics()
    assert total(samples, "http_requests_total", status="500") == 0
    assert total(samples, "http_requests_total") == len(BODY_SHAPES)
    assert total(samples, "prediction_success_total") + total(samples, "prediction_failure_total") == len(BODY_SHAPES)


def raw_exchange(port: int, head: bytes, body: bytes = b"", *, half_close: bool = False,
                 timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``head`` and ``body`` on a new connection; everything the proxy answers, and when it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        began = time.monotonic()
        try:
            connection.sendall(head + body)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy may answer and close before a hostile request is all sent
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            answer += b"<reset>"
        return answer, time.monotonic() - began


def post_head(length: int | None, *extra: bytes) -> bytes:
    lines = [b"POST /predict HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json", *extra]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def test_an_oversized_body_gets_the_413_early_and_the_connection_closes_cleanly(proxy):
    limit_message = f"request body exceeds the limit of {LIMIT} bytes"
    for size in (2 * LIMIT, 20 * LIMIT):  # the second one far over the old 16 MiB guard
        response = requests.post(proxy.url + "/predict", data=b" " * size, headers=JSON_TYPE, timeout=30)
        assert response.status_code == 413, size
        check_error_shape(response, "payload_too_large")
        assert response.json()["error"]["message"] == limit_message
        assert response.headers["Connection"] == "close"

    # Expect: 100-continue: the 413 comes instead of the 100, and the client never sends the body.
    answer, _ = raw_exchange(proxy.port, post_head(20 * LIMIT, b"Expect: 100-continue"))
    assert status_line(answer) == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE", answer[:200]
    assert b"100 Continue" not in answer and limit_message.encode() in answer

    # A body within the limit gets its 100 Continue, then the model's answer.
    answer, _ = raw_exchange(proxy.port, post_head(len(SEED), b"Expect: 100-continue"), SEED.encode())
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), answer[:200]
    # Refused before the 100 (here for having no content type), the body is never sent and the
    # answer says the connection closes.
    head = post_head(len(SEED), b"Expect: 100-continue").replace(b"Content-Type: application/json\r\n", b"")
    answer, _ = raw_exchange(proxy.port, head)
    assert status_line(answer) == b"HTTP/1.1 415 UNSUPPORTED MEDIA TYPE", answer[:200]
    assert b"\r\nConnection: close\r\n" in answer and b"100 Continue" not in answer

    samples = proxy.metrics()
    assert total(samples, "prediction_failure_by_reason_total", reason="payload_too_large") == 3
    assert total(samples, "http_requests_total", status="413") == 3
    assert total(samples, "prediction_failure_by_reason_total", reason="unsupported_media_type") == 1
    assert total(samples, "prediction_success_total") == 1


def test_a_body_shorter_than_its_content_length_is_answered_and_counted(mlflow_server, start_proxy):
    proxy = start_proxy(mlflow_server.url, client_timeout=1)
    half = SEED.encode()[: len(SEED) // 2]
    # The client closes its side: the body ended early. uWSGI's router closes the connection on the
    # client's end of stream, so the 400 reaches nobody, but the failed prediction is counted.
    answer, _ = raw_exchange(proxy.port, post_head(len(SEED)), half, half_close=True)
    assert answer == b"" or status_line(answer) == b"HTTP/1.1 400 BAD REQUEST", answer[:300]
    wait_for_count(proxy, "incomplete_body", 1)
    # The client stops sending and waits: after client_timeout of silence, 408.
    answer, took = raw_exchange(proxy.port, post_head(len(SEED)), half)
    assert status_line(answer) == b"HTTP/1.1 408 REQUEST TIMEOUT" and b'"client_timeout"' in answer, answer[:300]
    assert 1.0 <= took < 3.0, took
    samples = proxy.metrics()
    assert total(samples, "prediction_failure_by_reason_total", reason="incomplete_body") == 1
    assert total(samples, "prediction_failure_by_reason_total", reason="client_timeout") == 1
    assert total(samples, "prediction_failure_total") == 2 and total(samples, "http_requests_total") == 2


def wait_for_count(proxy, reason: str, expected: int, timeout: float = 5.0) -> None:
    """The worker may still be finishing a request whose client has gone."""
    deadline = time.monotonic() + timeout
    while total(proxy.metrics(), "prediction_failure_by_reason_total", reason=reason) != expected:
        assert time.monotonic() < deadline, f"{reason} never reached {expected}"
        time.sleep(0.05)


def test_header_floods_and_long_header_lines_never_reach_the_app(proxy):
    def get(*headers: bytes) -> bytes:
        head = b"\r\n".join([b"GET /predict HTTP/1.1", b"Host: 127.0.0.1", *headers, b"Connection: close"])
        return raw_exchange(proxy.port, head + b"\r\n\r\n")[0]

    # Within the limits (64 KiB of headers, 200 lines): an ordinary answer (405: /predict is POST only).
    assert status_line(get(b"X-Long: " + b"a" * 30_000)) == b"HTTP/1.1 405 METHOD NOT ALLOWED"
    assert status_line(get(*(b"X-Header-%d: v" % i for i in range(150)))) == b"HTTP/1.1 405 METHOD NOT ALLOWED"
    assert status_line(get(*(b"X-Same: v" for _ in range(5000)))) == b"HTTP/1.1 405 METHOD NOT ALLOWED"
    # Beyond them the connection is closed without an answer: no request was ever made.
    for flood in ([b"X-Long: " + b"a" * 70_000], [b"X-Long: " + b"a" * 1_000_000],
                  [b"X-Header-%d: v" % i for i in range(2000)], [b"X-Header-%d: v" % i for i in range(20_000)]):
        assert get(*flood) in (b"", b"<reset>")
    assert requests.get(proxy.url + "/healthz", timeout=5).status_code == 200
    samples = proxy.metrics()
    assert total(samples, "http_requests_total") == 3  # the three 405s
    assert total(samples, "prediction_success_total") + total(samples, "prediction_failure_total") == 0


class FakeExplodingUpstream:
    """A fake upstream client whose call raises an error no real component raises on demand."""

    def invoke(self, body: bytes, content_type: str):
        raise RuntimeError("an error the proxy does not foresee")

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def test_an_unforeseen_error_is_a_json_500_counted_as_internal_error():
    telemetry = setup_telemetry(environ={})
    app = create_app(Settings(), telemetry, start_sampler=False, upstream=FakeExplodingUpstream())
    try:
        response = app.test_client().post("/predict", json=SEED_EXAMPLE)
        assert response.status_code == 500
        assert response.get_json() == {"error": {"code": "internal_error",
                                                 "message": "the proxy failed to handle the request"}}
        samples = parse_samples(app.test_client().get("/metrics").get_data(as_text=True))
    finally:
        close_app(app)
    assert total(samples, "prediction_failure_by_reason_total", reason="internal_error") == 1
    assert total(samples, "prediction_failure_total") == 1 and total(samples, "prediction_success_total") == 0
    assert total(samples, "http_requests_total", status="500") == 1


def test_every_failure_reason_exists_at_zero_from_start_up():
    telemetry = setup_telemetry(environ={})
    app = create_app(Settings(), telemetry, start_sampler=False, upstream=FakeExplodingUpstream())
    try:
        text = app.test_client().get("/metrics").get_data(as_text=True)
    finally:
        close_app(app)
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "prediction_failure_by_reason"]
    reasons = {sample.labels["reason"] for sample in family.samples}
    assert {"incomplete_body", "client_timeout", "internal_error", "payload_too_large"} <= reasons


def test_answers_that_leave_the_body_unread_keep_the_connection_usable(proxy):
    # uWSGI's router loses a request that arrives while the worker is still busy with the previous
    # one after answering it; the unread body used to be discarded then, and 2-3 % of these failed.
    with requests.Session() as session:
        for i in range(300):
            if i % 2:
                response = session.post(proxy.url + "/no-such-route", data=b"x" * 200)
            else:
                response = session.put(proxy.url + "/predict", data=b"x" * 200)
            assert response.status_code == (404 if i % 2 else 405)
    samples = proxy.metrics()
    assert total(samples, "http_requests_total") == 300
    assert total(samples, "http_requests_total", status="404") == 150
