"""The one JSON error shape of the proxy, and the errors a prediction is refused with.

The outcomes themselves (:class:`~inferwatch.contract.outcomes.PredictionOutcome`) are the
contract's; each refusal here carries one, and its code is that outcome's value.

Every error the proxy itself makes is ``{"error": {"code": "...", "message": "..."}}`` with the
status below. Messages are written for the client and never carry internal URLs.
"""

from __future__ import annotations

import json

from inferwatch.contract.outcomes import PredictionOutcome


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


def refusal(status: int, outcome: PredictionOutcome, message: str) -> ProxyError:
    """A prediction refused with ``outcome``: its code is the outcome's value."""
    return ProxyError(status, outcome.value, message, outcome)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def payload_too_large(limit: int) -> ProxyError:
    return refusal(413, PredictionOutcome.PAYLOAD_TOO_LARGE, f"request body exceeds the limit of {limit} bytes")


def unsupported_media_type(content_type: str | None) -> ProxyError:
    given = content_type or "none"
    return refusal(415, PredictionOutcome.UNSUPPORTED_MEDIA_TYPE,
                   f"content type {given!r} is not supported; send application/json or text/csv")


def invalid_json(detail: str) -> ProxyError:
    return refusal(400, PredictionOutcome.INVALID_JSON, f"request body is not valid JSON: {detail}")


def invalid_input(detail: str) -> ProxyError:
    return refusal(400, PredictionOutcome.INVALID_INPUT, detail)


def upstream_unavailable() -> ProxyError:
    return refusal(503, PredictionOutcome.UPSTREAM_UNAVAILABLE, "the model server is not reachable")


def upstream_timeout() -> ProxyError:
    return refusal(504, PredictionOutcome.UPSTREAM_TIMEOUT, "the model server did not answer in time")


def upstream_error(detail: str) -> ProxyError:
    return refusal(502, PredictionOutcome.UPSTREAM_ERROR, f"the model server failed: {detail}")


def incomplete_body(detail: str) -> ProxyError:
    return refusal(400, PredictionOutcome.INCOMPLETE_BODY, detail)


def client_timeout(seconds: float) -> ProxyError:
    return refusal(408, PredictionOutcome.CLIENT_TIMEOUT,
                   f"the request body did not arrive: nothing was received for {seconds:g} s")


def body_timeout(seconds: float, crowded: bool = False) -> ProxyError:
    """408 for a body still arriving ``seconds`` after its headers, however steadily it came, or
    sooner when more slow bodies came than the proxy waits for at once (``crowded``)."""
    message = (
        "the request body arrived too slowly: more slow request bodies are arriving than the proxy waits for"
        if crowded else f"the request body did not arrive in full within {seconds:g} s"
    )
    return refusal(408, PredictionOutcome.CLIENT_TIMEOUT, message)


def internal_error() -> ProxyError:
    return refusal(500, PredictionOutcome.INTERNAL_ERROR, "the proxy failed to handle the request")
