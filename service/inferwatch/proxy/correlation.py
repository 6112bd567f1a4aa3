"""Correlation on every answer: ``traceparent`` and ``X-Request-Id``.

Every response of the app (predictions, errors, unknown paths) carries two headers:

``traceparent``
    The W3C trace context of the request's server span, ``00-<trace id>-<span id>-<flags>``: a
    client that logs it finds the trace (``inferwatch traces --trace <trace id>``). It continues
    the client's own trace when the client sent a ``traceparent``. Absent when telemetry is off.
``X-Request-Id``
    The client's own id when it is well formed (1 to 128 characters of letters, digits and
    ``-_.:+=/@``), otherwise a new one (32 hex digits). An id that is malformed, oversized or sent
    twice is replaced, never echoed: it would otherwise reach logs and headers as the client wrote it.

Both are on the server span (``inferwatch.request.id``; the trace context is the span's own)
and in the request's JSON log line (``request_id``, ``trace_id``, ``span_id``). The operational
endpoints (``/healthz``, ``/readyz``, ``/metrics``) are answered in front of the app: no span, no
log line, no correlation headers.

The same hook marks about one request per second for the trace store to keep, so that ordinary
requests have exemplars that resolve (see :mod:`inferwatch.proxy.telemetry.exemplars`).
"""

from __future__ import annotations

import random
import re

from flask import Flask, Response, g, request
from opentelemetry import trace

from inferwatch.contract.spans import REQUEST_ID as ATTR_REQUEST_ID
from inferwatch.proxy.telemetry.exemplars import ExemplarMarks

REQUEST_ID_HEADER = "X-Request-Id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID_LENGTH = 128

_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/@-]{1,%d}" % MAX_REQUEST_ID_LENGTH)


def request_id(given: str | None) -> str:
    """``given`` when it is a well-formed request id, else a new one."""
    if given and _WELL_FORMED_REQUEST_ID.fullmatch(given):
        return given
    return format(random.getrandbits(128), "032x")


def traceparent(span_context: trace.SpanContext) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"


def install(app: Flask, marks: ExemplarMarks) -> None:
    """Add the correlation hooks to ``app``; call it after the Flask instrumentation, whose
    ``before_request`` starts the server span these hooks annotate."""

    @app.before_request
    def _correlate() -> None:
        g.request_id = request_id(request.headers.get(REQUEST_ID_HEADER))
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(ATTR_REQUEST_ID, g.request_id)
            marks.mark(span)

    @app.after_request
    def _correlation_headers(response: Response) -> Response:
        if "request_id" not in g:  # a hook before ours failed: the answer still gets an id
            g.request_id = request_id(None)
        response.headers[REQUEST_ID_HEADER] = g.request_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            response.headers[TRACEPARENT_HEADER] = traceparent(span_context)
        return response
