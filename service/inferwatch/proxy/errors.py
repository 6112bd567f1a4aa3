"""Prediction outcomes and the one JSON error shape of the proxy.

Every error the proxy itself makes is ``{"error": {"code": "...", "message": "..."}}`` with the
status below. Messages are written for the client and never carry internal URLs.
"""

from __future__ import annotations

import enum
import json


class PredictionOutcome(enum.Enum):
    """How a prediction request ended; the value is the ``error.type``/``reason`` of failures."""

    SUCCESS = "success"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_JSON = "invalid_json"
    INVALID_INPUT = "invalid_input"
    INCOMPLETE_BODY = "incomplete_body"
    CLIENT_TIMEOUT = "client_timeout"
    MODEL_REJECTED = "model_rejected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    # Anything the proxy did not foresee: still a counted failure with a JSON answer (500).
    INTERNAL_ERROR = "internal_error"


FAILURES = tuple(outcome for outcome in PredictionOutcome if outcome is not PredictionOutcome.SUCCESS)


class ProxyError(Exception):
    """An error answered by the proxy itself, with its status, code and client message."""

    def __init__(self, status: int, code: str, message: str, outcome: PredictionOutcome | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def payload_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413, "payload_too_large", f"request body exceeds the limit of {limit} bytes",
        PredictionOutcome.PAYLOAD_TOO_LARGE,
    )


def unsupported_media_type(content_type: str | None) -> ProxyError:
    given = content_type or "none"
    return ProxyError(
        415, "unsupported_media_type",
        f"content type {given!r} is not supported; send application/json or text/csv",
        PredictionOutcome.UNSUPPORTED_MEDIA_TYPE,
    )


def invalid_json(detail: str) -> ProxyError:
    return ProxyError(400, "invalid_json", f"request body is not valid JSON: {detail}", PredictionOutcome.INVALID_JSON)


def invalid_input(detail: str) -> ProxyError:
    return ProxyError(400, "invalid_input", detail, PredictionOutcome.INVALID_INPUT)


def upstream_unavailable() -> ProxyError:
    return ProxyError(503, "upstream_unavailable", "the model server is not reachable", PredictionOutcome.UPSTREAM_UNAVAILABLE)


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "upstream_timeout", "the model server did not answer in time", PredictionOutcome.UPSTREAM_TIMEOUT)


def upstream_error(detail: str) -> ProxyError:
    return ProxyError(502, "upstream_error", f"the model server failed: {detail}", PredictionOutcome.UPSTREAM_ERROR)


def incomplete_body(detail: str) -> ProxyError:
    return ProxyError(400, "incomplete_body", detail, PredictionOutcome.INCOMPLETE_BODY)


def client_timeout(seconds: float) -> ProxyError:
    return ProxyError(
        408, "client_timeout", f"the request body did not arrive: nothing was received for {seconds:g} s",
        PredictionOutcome.CLIENT_TIMEOUT,
    )


def body_timeout(seconds: float, crowded: bool = False) -> ProxyError:
    """408 for a body still arriving ``seconds`` after its headers, however steadily it came, or
    sooner when more slow bodies came than the proxy waits for at once (``crowded``)."""
    message = (
        "the request body arrived too slowly: more slow request bodies are arriving than the proxy waits for"
        if crowded else f"the request body did not arrive in full within {seconds:g} s"
    )
    return ProxyError(408, "client_timeout", message, PredictionOutcome.CLIENT_TIMEOUT)


def internal_error() -> ProxyError:
    return ProxyError(500, "internal_error", "the proxy failed to handle the request", PredictionOutcome.INTERNAL_ERROR)
