"""Structured logs: one JSON line per request, written off the request path.

``configure_logging`` sends every record through a queue to a background thread, and
:class:`AccessLog` writes the request lines from a thread of its own, so a request never waits on
a write to stderr. Each request line has ``time``, ``method``, ``route``, ``status``,
``duration_s``, ``outcome``, ``request_id`` (the ``X-Request-Id`` answered), ``trace_id`` and
``span_id``; the level is ``INFERWATCH_LOG_LEVEL``
(request lines are INFO, so WARNING silences them).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
import time

from flask import request
from opentelemetry import trace

from inferwatch.contract.metrics import UNMATCHED_ROUTE

ACCESS_LOGGER = "inferwatch.access"


def utc_timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. 2026-11-26T05:35:04.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level: str = "INFO", stream=None) -> logging.handlers.QueueListener:
    """Route all logging through a queue to one JSON stream handler; returns the started listener."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(level)
    listener.start()
    return listener


class AccessLog:
    """The per-request JSON line, written by a background thread.

    The request thread only puts a tuple on a queue (no formatting, no logging records, no
    syscall); the writer thread formats lines and writes each batch with one ``write``. Lines
    have the same shape as :class:`JsonFormatter` output, with ``logger`` ``inferwatch.access``.
    """

    _STOP = object()

    def __init__(self, stream=None, logger: logging.Logger | None = None):
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)
        self._stream = stream or sys.stderr
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="inferwatch-access-log", daemon=True)
        self._thread.start()

    def write(self, status: int, duration_s: float, outcome, request_id: str | None = None) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        context = trace.get_current_span().get_span_context()
        rule = request.url_rule
        self._queue.put((
            time.time(),
            request.method,
            rule.rule if rule is not None else UNMATCHED_ROUTE,
            status,
            duration_s,
            outcome.value if outcome is not None else None,
            request_id,
            context.trace_id if context.is_valid else None,
            context.span_id if context.is_valid else None,
        ))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the writer."""
        self._queue.put(self._STOP)
        self._thread.join(timeout)

    def _drain(self) -> None:
        while True:
            entries = [self._queue.get()]
            while len(entries) < 512:  # take whatever else is waiting, up to a batch
                try:
                    entries.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = self._STOP in entries
            lines = [format_line(entry) for entry in entries if entry is not self._STOP]
            if lines:
                try:
                    self._stream.write("".join(lines))
                    self._stream.flush()
                except (OSError, ValueError):  # a closed stream must not end the writer
                    pass
            if stop:
                return


def format_line(entry: tuple) -> str:
    created, method, route, status, duration_s, outcome, request_id, trace_id, span_id = entry
    return json.dumps({
        "time": utc_timestamp(created),
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "message": "request",
        "method": method,
        "route": route,
        "status": status,
        "duration_s": round(duration_s, 6),
        "outcome": outcome,
        "request_id": request_id,
        "trace_id": format(trace_id, "032x") if trace_id is not None else None,
        "span_id": format(span_id, "016x") if span_id is not None else None,
    }) + "\n"
