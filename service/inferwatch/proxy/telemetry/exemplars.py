"""Exemplars that always lead to a trace the trace store kept.

An exemplar (a trace id on a histogram bucket) is recorded in the proxy when the request ends,
but the collector decides only seconds later which traces to keep (tail sampling: every error,
every trace of at least ``OTELCOL_TRACES_SLOW_MS``, every trace marked with
:data:`ATTR_EXEMPLAR`, and a share of the rest). An exemplar of an ordinary request would point
at a trace that is usually thrown away. So a measurement becomes an exemplar only when its trace
is certain to be kept, judged from the span the measurement was made in
(:class:`KeptTraceExemplarFilter`):

* the span failed (status ``ERROR``): the collector's ``errors`` policy keeps the trace;
* the span lasted at least the latency alert's threshold (an ended span: end - start; one still
  open: measurement time - start): the trace lasts at least as long, and the ``slow`` policy
  keeps it (its threshold must not exceed the alert's, which a test checks);
* the trace was marked: :class:`ExemplarMarks` marks about one request per second with
  :data:`ATTR_EXEMPLAR` on its server span, and the ``exemplars`` policy keeps marked traces. This
  gives the fast, ordinary buckets exemplars too, at a cost of about one kept trace per second.

Ordinary requests that are not marked record no exemplar: their trace may or may not be in the
collector's sampled share, and no exemplar should lead nowhere.

The SDK's own histogram reservoir forgets its exemplars at every collection, so a bucket would
show its exemplar in exactly one scrape (or one OTLP export, after which the collector's exporter
shows none). :class:`LatestPerBucketReservoir` keeps the newest exemplar of each bucket until a
newer one replaces it; Prometheus stores an exemplar once and ignores it when it comes again.
Exemplars are recorded on the two latency histograms only (their Views use
:func:`latest_per_bucket`); the prediction counters are observable and record none, on both
scrape paths alike.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Exemplar, ExemplarFilter, ExemplarReservoir
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import Attributes

from inferwatch.contract.spans import EXEMPLAR as ATTR_EXEMPLAR


NANOS_PER_SECOND = 1_000_000_000


class ExemplarMarks:
    """Marks about one request per ``interval_s`` so that its trace is kept and may be an exemplar.

    :meth:`mark` is called at the start of every request, with its server span; it costs one
    clock read unless this request is the one marked. The marked trace ids are remembered (the
    newest ``remembered``) so that measurements in any span of the trace, the MLflow call's client
    span included, are recognised.
    """

    def __init__(self, interval_s: float = 1.0, remembered: int = 256):
        self._interval_s = interval_s
        self._remembered = remembered
        self._next_mark = 0.0
        self._trace_ids: dict[int, None] = {}  # insertion-ordered: the oldest is dropped first
        self._lock = threading.Lock()

    def mark(self, span: trace.Span) -> bool:
        now = time.monotonic()
        if now < self._next_mark:
            return False
        span_context = span.get_span_context()
        if not (span_context.trace_flags.sampled and span.is_recording()):
            return False
        with self._lock:
            if now < self._next_mark:
                return False
            self._next_mark = now + self._interval_s
            self._trace_ids[span_context.trace_id] = None
            if len(self._trace_ids) > self._remembered:
                del self._trace_ids[next(iter(self._trace_ids))]
        span.set_attribute(ATTR_EXEMPLAR, True)
        return True

    def __contains__(self, trace_id: int) -> bool:
        return trace_id in self._trace_ids


class KeptTraceExemplarFilter(ExemplarFilter):
    """Lets a measurement be an exemplar only when the collector is certain to keep its trace."""

    def __init__(self, slow_seconds: float, marks: ExemplarMarks):
        self._slow_ns = round(slow_seconds * NANOS_PER_SECOND)
        self._marks = marks

    def should_sample(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> bool:
        span = trace.get_current_span(context)
        span_context = span.get_span_context()
        if not span_context.trace_flags.sampled:
            return False
        if span_context.trace_id in self._marks:
            return True
        status = getattr(span, "status", None)
        if status is not None and status.status_code is StatusCode.ERROR:
            return True
        started = getattr(span, "start_time", None)
        if started is None:
            return False
        # An open span has lasted at least this long already; the trace lasts at least as long.
        ended = span.end_time or time_unix_nano
        return ended - started >= self._slow_ns


class LatestPerBucketReservoir(ExemplarReservoir):
    """The newest exemplar of each histogram bucket, kept across collections."""

    def __init__(self, boundaries: Sequence[float], **kwargs):
        # The SDK passes the aggregation's parameters as keywords; only the boundaries matter here.
        self._boundaries = tuple(boundaries)
        # One slot per bucket (value <= boundary), the last one for +Inf; assigning a slot is atomic.
        self._latest: list[tuple | None] = [None] * (len(self._boundaries) + 1)

    def offer(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        self._latest[bisect_left(self._boundaries, value)] = (
            value, time_unix_nano, attributes, span_context.span_id, span_context.trace_id,
        )

    def collect(self, point_attributes: Attributes) -> list[Exemplar]:
        exemplars = []
        for entry in list(self._latest):
            if entry is None:
                continue
            value, time_unix_nano, attributes, span_id, trace_id = entry
            point_attributes = point_attributes or {}
            filtered = {k: v for k, v in (attributes or {}).items() if k not in point_attributes}
            exemplars.append(Exemplar(filtered or None, value, time_unix_nano, span_id, trace_id))
        return exemplars


def latest_per_bucket(aggregation_type) -> type[ExemplarReservoir]:
    """A View's ``exemplar_reservoir_factory`` for the latency histograms."""
    return LatestPerBucketReservoir
