"""Structured logs: one JSON line per request, written off the request path.

``configure_logging`` sends every record through a queue to a background thread, so a request
never waits on a write to stderr. Each request line has ``time``, ``method``, ``route``,
``status``, ``duration_s``, ``outcome``, ``trace_id`` and ``span_id``; the level is
``INFERWATCH_LOG_LEVEL`` (request lines are INFO, so WARNING silences them).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time

from flask import request
from opentelemetry import trace

from inferwatch.metric_mapping import UNMATCHED_ROUTE

ACCESS_LOGGER = "inferwatch.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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
    """Writes the request line for the current Flask request."""

    def __init__(self, logger: logging.Logger | None = None):
        self._logger = logger or logging.getLogger(ACCESS_LOGGER)

    def write(self, status: int, duration_s: float, outcome) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        context = trace.get_current_span().get_span_context()
        rule = request.url_rule
        fields = {
            "method": request.method,
            "route": rule.rule if rule is not None else UNMATCHED_ROUTE,
            "status": status,
            "duration_s": round(duration_s, 6),
            "outcome": outcome.value if outcome is not None else None,
            "trace_id": format(context.trace_id, "032x") if context.is_valid else None,
            "span_id": format(context.span_id, "016x") if context.is_valid else None,
        }
        self._logger.info("request", extra={"fields": fields})
