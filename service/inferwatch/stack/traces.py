"""``inferwatch traces``: the slowest or failed traces in the trace store, model time vs proxy time.

The native stack's Jaeger has a query API but no web UI (its assets are not in the Go module);
this command is that UI's terminal stand-in. It reads Jaeger's query API (``/api/traces``) and
shows, for each trace, how long the request took, how much of it was the MLflow call (the
client spans under the proxy's server span: model time) and how much the proxy itself (the
rest: proxy time)::

    inferwatch traces --slow                  # traces at least the latency alert's threshold long
    inferwatch traces --errors --since 1h     # traces with an error, newest hour
    inferwatch traces                         # the slowest traces of the last 15 minutes
    inferwatch traces --trace 4bf92f3577b34da6a3ce929d0e0e4736    # one trace: its span tree
    inferwatch traces --request-id req-42     # the trace of the answer with X-Request-Id: req-42

``--jaeger URL`` (default ``http://127.0.0.1:16686``, or ``INFERWATCH_JAEGER_URL``) names the
query API; ``--service`` the traced service (default ``inferwatch``), ``--limit`` how many
traces to list (default 20). The list is sorted slowest first, picked among the newest 1000
traces of the window. A trace id comes from an alert
email's link, an exemplar, a ``traceparent`` answer header or the proxy's JSON log line.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from inferwatch.contract import durations
from inferwatch.contract.metrics import DEFAULT_SERVICE_NAME
from inferwatch.contract.spans import EXEMPLAR, OUTCOME, REQUEST_ID
from inferwatch.contract.thresholds import THRESHOLDS

DEFAULT_JAEGER_URL = "http://127.0.0.1:16686"
# At most this many traces of the window are fetched to pick the slowest or the failed ones.
SEARCH_DEPTH = 1000
SERVER, CLIENT = "server", "client"


class TraceStoreError(RuntimeError):
    """The trace store did not answer, or answered something that is not Jaeger's query API."""


# Seconds in a duration such as ``15m``, ``1h30m``, ``90s``; ``ValueError`` otherwise.
parse_since = durations.seconds


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_us: int
    duration_us: int
    tags: Mapping[str, object]

    @property
    def kind(self) -> str:
        return str(self.tags.get("span.kind", ""))

    @property
    def failed(self) -> bool:
        return self.tags.get("error") in (True, "true") or self.tags.get("otel.status_code") == "ERROR"


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]
    service: str = DEFAULT_SERVICE_NAME  # the proxy's service name

    @property
    def server(self) -> Span:
        """The proxy's server span (the request; a caller's own spans may share the trace),
        else the earliest server span, else the earliest span."""
        servers = [s for s in self.spans if s.kind == SERVER]
        ours = [s for s in servers if s.service == self.service]
        return min(ours or servers or self.spans, key=lambda s: s.start_us)

    @property
    def start_us(self) -> int:
        return min(s.start_us for s in self.spans)

    @property
    def duration_us(self) -> int:
        return max(s.start_us + s.duration_us for s in self.spans) - self.start_us

    @property
    def model_us(self) -> int:
        """Time in the MLflow calls: the client spans directly under the server span."""
        server = self.server
        return sum(s.duration_us for s in self.spans if s.kind == CLIENT and s.parent_id == server.span_id)

    @property
    def proxy_us(self) -> int:
        return self.server.duration_us - self.model_us

    @property
    def failed(self) -> bool:
        return any(s.failed for s in self.spans)

    def children(self, span_id: str | None) -> list[Span]:
        known = {s.span_id for s in self.spans}
        if span_id is None:  # roots: no parent, or a parent outside this trace (the caller's)
            return sorted((s for s in self.spans if s.parent_id not in known), key=lambda s: s.start_us)
        return sorted((s for s in self.spans if s.parent_id == span_id), key=lambda s: s.start_us)


def parse_trace(data: Mapping, service: str = DEFAULT_SERVICE_NAME) -> Trace:
    """One trace of Jaeger's ``/api/traces`` JSON; ``service`` is the proxy's service name."""
    processes = {key: p.get("serviceName", "") for key, p in data.get("processes", {}).items()}
    spans = []
    for span in data["spans"]:
        parents = [r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
        spans.append(Span(
            span_id=span["spanID"],
            parent_id=parents[0] if parents else None,
            name=span["operationName"],
            service=processes.get(span.get("processID"), ""),
            start_us=int(span["startTime"]),
            duration_us=int(span["duration"]),
            tags={tag["key"]: tag["value"] for tag in span.get("tags", [])},
        ))
    return Trace(data["traceID"], tuple(spans), service)


@dataclass
class JaegerQuery:
    """Jaeger's HTTP query API (``/api/traces``), as Jaeger v2 serves it."""

    base_url: str = DEFAULT_JAEGER_URL
    timeout: float = 10.0

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict | None:
        url = self.base_url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise TraceStoreError(f"{url}: HTTP {error.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise TraceStoreError(f"cannot read the trace store at {self.base_url}: {error}") from None

    def trace(self, trace_id: str, service: str = DEFAULT_SERVICE_NAME) -> Trace | None:
        """The trace, or None when the store does not have it (sampled away, expired or unknown)."""
        answer = self._get(f"/api/traces/{urllib.parse.quote(trace_id.lower())}")
        data = (answer or {}).get("data") or []
        return parse_trace(data[0], service) if data else None

    def search(self, service: str, start_s: float, end_s: float, *, min_duration: str | None = None,
               tags: Mapping[str, str] | None = None, limit: int = 20) -> list[Trace]:
        params = {"service": service, "start": str(int(start_s * 1e6)), "end": str(int(end_s * 1e6)),
                  "limit": str(limit)}
        if min_duration:
            params["minDuration"] = min_duration
        if tags:
            params["tags"] = json.dumps(dict(tags))
        answer = self._get("/api/traces", params) or {}
        return [parse_trace(data, service) for data in answer.get("data") or []]


# Jaeger's duration syntax for a threshold: ``2s``, ``2500ms``.
min_duration = durations.short


def humanize_us(microseconds: int) -> str:
    if microseconds >= 1_000_000:
        return f"{microseconds / 1e6:.3f}s"
    return f"{microseconds / 1000:.1f}ms"


def _utc(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us / 1e6))


def format_list(traces: Sequence[Trace]) -> str:
    header = f"{'trace id':32}  {'started (UTC)':19}  {'total':>8}  {'model':>8}  {'proxy':>8}  {'status':6}  outcome"
    lines = [header]
    for t in traces:
        server = t.server
        status = str(server.tags.get("http.response.status_code", "-"))
        outcome = str(server.tags.get(OUTCOME, "error" if t.failed else "-"))
        lines.append(f"{t.trace_id:32}  {_utc(t.start_us):19}  {humanize_us(server.duration_us):>8}  "
                     f"{humanize_us(t.model_us):>8}  {humanize_us(t.proxy_us):>8}  {status:6}  {outcome}")
    return "\n".join(lines)


SHOWN_TAGS = ("http.route", "http.response.status_code", OUTCOME, "error.type", REQUEST_ID,
              EXEMPLAR)


def format_tree(t: Trace) -> str:
    server = t.server
    share = t.model_us / server.duration_us if server.duration_us else 0.0
    lines = [f"trace {t.trace_id}: {humanize_us(server.duration_us)}, model (MLflow call) "
             f"{humanize_us(t.model_us)} ({share:.0%}), proxy {humanize_us(t.proxy_us)}"]

    def walk(span: Span, depth: int) -> None:
        tags = " ".join(f"{key}={span.tags[key]}" for key in SHOWN_TAGS if key in span.tags)
        flag = " ERROR" if span.failed else ""
        lines.append(f"  +{humanize_us(span.start_us - t.start_us):>9} {humanize_us(span.duration_us):>9}  "
                     f"{'  ' * depth}{span.name} [{span.service} {span.kind or '-'}]{flag} {tags}".rstrip())
        for child in t.children(span.span_id):
            walk(child, depth + 1)

    for root in t.children(None):
        walk(root, 0)
    return "\n".join(lines)


@dataclass(frozen=True)
class TracesQuery:
    """What ``inferwatch traces`` was asked for."""

    jaeger_url: str = DEFAULT_JAEGER_URL
    service: str = DEFAULT_SERVICE_NAME
    since_s: float = 15 * 60
    slow: bool = False
    errors: bool = False
    trace_id: str | None = None
    request_id: str | None = None
    limit: int = 20
    slow_seconds: float = THRESHOLDS.latency_seconds
    now: float | None = field(default=None, compare=False)


def run(query: TracesQuery) -> tuple[int, str]:
    """(exit status, what to print)."""
    store = JaegerQuery(query.jaeger_url)
    if query.trace_id:
        found = store.trace(query.trace_id, query.service)
        if found is None:
            return 1, (f"trace {query.trace_id} is not in the trace store at {query.jaeger_url} "
                       "(never sent, sampled away, or older than the store keeps)")
        return 0, format_tree(found)
    end = query.now if query.now is not None else time.time()
    start = end - query.since_s
    if query.request_id:
        found = store.search(query.service, start, end, tags={REQUEST_ID: query.request_id},
                             limit=query.limit)
        if not found:
            return 1, (f"no trace with request id {query.request_id!r} in the last {int(query.since_s)} s "
                       f"at {query.jaeger_url} (sampled away, or older: see --since)")
        return 0, "\n\n".join(format_tree(t) for t in found)
    # Jaeger returns the newest traces first; ask for more than shown and keep the slowest. Its
    # v2 memory store matches tags against span attributes only, and the error status is none, so
    # failed traces are picked here, among the newest SEARCH_DEPTH of the window.
    fetched = store.search(
        query.service, start, end,
        min_duration=min_duration(query.slow_seconds) if query.slow else None,
        limit=SEARCH_DEPTH if query.errors else max(query.limit, min(query.limit * 10, SEARCH_DEPTH)),
    )
    if query.errors:
        fetched = [t for t in fetched if t.failed]
    traces = sorted(fetched, key=lambda t: t.server.duration_us, reverse=True)[: query.limit]
    what = ", ".join(filter(None, [
        "failed" if query.errors else "", f"at least {min_duration(query.slow_seconds)} long" if query.slow else "",
    ])) or "all"
    if not traces:
        return 0, f"no traces of {query.service} ({what}) in the last {int(query.since_s)} s at {query.jaeger_url}"
    return 0, (f"{len(traces)} traces of {query.service} ({what}), slowest first "
               f"(model = the MLflow call, proxy = the rest):\n" + format_list(traces))
