"""Smoke test of the Jaeger build and config.yaml with synthetic traces (no service needed).

Starts Jaeger on free loopback ports and checks that it listens on exactly the configured ports,
all on 127.0.0.1. Then sends two traces of service "inferwatch" shaped like the proxy's (a server
span "POST /predict" with a client child span "POST"): a slow one (2.5 s) over OTLP/HTTP and a
fast one (10 ms) over OTLP/gRPC, and reads them back from the query API: the trace by id in the
classic JSON (/api/traces/{id}) and in OTLP JSON (/api/v3/traces/{id}), the search with
minDuration (only the slow trace), and the service list. Prints the start-up time and the
resident memory, idle and after the traces.

Usage (any Python with the project's dependencies; the binary defaults to build.sh's)::

    python observability/jaeger/smoke_test.py [--binary PATH] [--keep-logs]

Exit status 0 when every check passes; each failed check is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

HERE = Path(__file__).resolve().parent
SERVICE_NAME = "inferwatch"
SERVER_SPAN = "POST /predict"
CLIENT_SPAN = "POST"
SLOW_NS = 2_500_000_000  # above the 2 s latency-alert threshold the search filters on
FAST_NS = 10_000_000
MIN_DURATION = "2s"
STARTUP_TIMEOUT = 30.0
TRACE_TIMEOUT = 10.0
# Logged at every start by a binary built from the Go module (DESIGN.md: no UI assets).
EXPECTED_WARNING = "ui assets not embedded in the binary"

ENDPOINT_VARIABLES = (
    "JAEGER_OTLP_GRPC_ENDPOINT",
    "JAEGER_OTLP_HTTP_ENDPOINT",
    "JAEGER_QUERY_HTTP_ENDPOINT",
    "JAEGER_QUERY_GRPC_ENDPOINT",
    "JAEGER_HEALTH_ENDPOINT",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def get_json(url: str) -> dict:
    status, body = http_get(url)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {body[:300]}")
    return json.loads(body)


def default_binary() -> str:
    out = subprocess.run(
        [str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return out.strip().splitlines()[-1]


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def listening_addresses(pid: int) -> set[str]:
    """host:port of every TCP and UDP socket the process listens on (ss, from iproute2)."""
    out = subprocess.run(
        ["ss", "-H", "-ltunp"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return {line.split()[4] for line in out.splitlines() if f"pid={pid}," in line}


def start_jaeger(binary: str, workdir: Path) -> tuple[subprocess.Popen, dict[str, str], float]:
    endpoints = {name: f"127.0.0.1:{free_port()}" for name in ENDPOINT_VARIABLES}
    telemetry_port = free_port()
    env = dict(os.environ, **endpoints, JAEGER_TELEMETRY_PORT=str(telemetry_port))
    endpoints["JAEGER_TELEMETRY"] = f"127.0.0.1:{telemetry_port}"
    started = time.monotonic()
    with open(workdir / "jaeger.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [binary, "--config", str(HERE / "config.yaml")], env=env, stdout=log, stderr=log
        )
    health = f"http://{endpoints['JAEGER_HEALTH_ENDPOINT']}/status"
    deadline = started + STARTUP_TIMEOUT
    while http_get(health)[0] != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Jaeger did not become healthy; see {workdir / 'jaeger.log'}")
        time.sleep(0.02)
    return process, endpoints, time.monotonic() - started


def emit_request_trace(exporter: SpanExporter, duration_ns: int) -> str:
    """One proxied prediction's spans, ending now; returns the trace id in hex."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("inferwatch.smoke")
    end = time.time_ns()
    server = tracer.start_span(
        SERVER_SPAN,
        kind=SpanKind.SERVER,
        start_time=end - duration_ns,
        attributes={"http.route": "/predict", "http.response.status_code": 200},
    )
    client = tracer.start_span(
        CLIENT_SPAN,
        kind=SpanKind.CLIENT,
        context=trace.set_span_in_context(server),
        start_time=end - duration_ns + 1_000,
        attributes={"server.address": "127.0.0.1", "server.port": 5005},
    )
    client.end(end_time=end - 1_000)
    server.end(end_time=end)
    provider.shutdown()
    return format(server.get_span_context().trace_id, "032x")


def wait_for_trace(query: str, trace_id: str) -> dict:
    """The classic-API answer for one trace, once both spans are stored."""
    deadline = time.monotonic() + TRACE_TIMEOUT
    while True:
        status, body = http_get(f"{query}/api/traces/{trace_id}")
        if status == 200 and len(json.loads(body)["data"][0]["spans"]) == 2:
            return json.loads(body)
        if time.monotonic() > deadline:
            raise RuntimeError(f"trace {trace_id} not stored: {status} {body[:300]}")
        time.sleep(0.1)


def check_classic_trace(answer: dict, trace_id: str, duration_ns: int) -> list[str]:
    """/api/traces/{id}: {"data": [{"traceID", "spans": [...], "processes": {...}}], ...}."""
    problems = []
    (found,) = answer["data"]
    spans = {span["operationName"]: span for span in found["spans"]}
    server, client = spans.get(SERVER_SPAN), spans.get(CLIENT_SPAN)
    if found["traceID"] != trace_id or server is None or client is None:
        return [f"trace {trace_id}: {sorted(spans)} under {found['traceID']}"]
    if server["references"] != []:
        problems.append(f"server span references: {server['references']}")
    expected_reference = {"refType": "CHILD_OF", "traceID": trace_id, "spanID": server["spanID"]}
    if client["references"] != [expected_reference]:
        problems.append(f"client span references: {client['references']}")
    if server["duration"] != duration_ns // 1_000:  # microseconds, as is startTime
        problems.append(f"server duration {server['duration']} us, sent {duration_ns} ns")
    for span, kind in ((server, "server"), (client, "client")):
        tags = {tag["key"]: tag["value"] for tag in span["tags"]}
        if tags.get("span.kind") != kind:
            problems.append(f"{span['operationName']} span.kind tag: {tags.get('span.kind')!r}")
        process = found["processes"][span["processID"]]
        if process["serviceName"] != SERVICE_NAME:
            problems.append(f"{span['operationName']} service: {process['serviceName']!r}")
    tags = {tag["key"]: tag for tag in server["tags"]}
    if tags.get("http.response.status_code", {}).get("type") != "int64":
        problems.append(f"http.response.status_code tag: {tags.get('http.response.status_code')}")
    return problems


def check_otlp_trace(answer: dict, trace_id: str, duration_ns: int) -> list[str]:
    """/api/v3/traces/{id}: {"result": {"resourceSpans": [...]}}, OTLP JSON."""
    spans = {}
    for resource_spans in answer["result"]["resourceSpans"]:
        attributes = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
        service = attributes["service.name"]["stringValue"]
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                spans[span["name"]] = (service, span)
    if set(spans) != {SERVER_SPAN, CLIENT_SPAN}:
        return [f"v3 trace {trace_id}: spans {sorted(spans)}"]
    problems = []
    (_, server), (_, client) = spans[SERVER_SPAN], spans[CLIENT_SPAN]
    if {service for service, _ in spans.values()} != {SERVICE_NAME}:
        problems.append(f"v3 services: {[service for service, _ in spans.values()]}")
    if client.get("parentSpanId") != server["spanId"] or "parentSpanId" in server:
        problems.append(f"v3 parents: {server.get('parentSpanId')}, {client.get('parentSpanId')}")
    if (server["kind"], client["kind"]) != (2, 3):  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
        problems.append(f"v3 kinds: {server['kind']}, {client['kind']}")
    elapsed = int(server["endTimeUnixNano"]) - int(server["startTimeUnixNano"])  # strings
    if elapsed != duration_ns:
        problems.append(f"v3 server span lasted {elapsed} ns, sent {duration_ns} ns")
    return problems


def classic_search(query: str, **params: str) -> list[str]:
    answer = get_json(f"{query}/api/traces?{urllib.parse.urlencode(params)}")
    return sorted(found["traceID"] for found in answer["data"] or [])


def otlp_search(query: str, **params: str) -> list[str]:
    params = {f"query.{name}": value for name, value in params.items()}
    answer = get_json(f"{query}/api/v3/traces?{urllib.parse.urlencode(params)}")
    return sorted(
        {
            span["traceId"]
            for resource_spans in answer["result"]["resourceSpans"]
            for scope_spans in resource_spans["scopeSpans"]
            for span in scope_spans["spans"]
        }
    )


def check_searches(query: str, slow: str, fast: str, since_us: int) -> list[str]:
    problems = []
    window = {  # start and end in microseconds since the epoch
        "service": SERVICE_NAME,
        "start": str(since_us),
        "end": str(time.time_ns() // 1_000 + 1_000_000),
        "limit": "20",
    }
    if (found := classic_search(query, **window, minDuration=MIN_DURATION)) != [slow]:
        problems.append(f"/api/traces minDuration={MIN_DURATION}: {found}, expected [{slow}]")
    if (found := classic_search(query, **window)) != sorted([slow, fast]):
        problems.append(f"/api/traces without minDuration: {found}")

    # v3 takes RFC 3339 times, and num_traces is required ("search depth must be greater than 0").
    otlp_window = {
        "service_name": SERVICE_NAME,
        "start_time_min": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since_us / 1e6)),
        "start_time_max": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1)),
        "num_traces": "20",
    }
    if (found := otlp_search(query, **otlp_window, duration_min=MIN_DURATION)) != [slow]:
        problems.append(f"/api/v3/traces duration_min={MIN_DURATION}: {found}")

    services = get_json(f"{query}/api/services")["data"]
    if services != [SERVICE_NAME]:
        problems.append(f"/api/services: {services}")
    return problems


def check_listening(pid: int, endpoints: dict[str, str]) -> list[str]:
    listening = listening_addresses(pid)
    if listening != set(endpoints.values()):
        return [f"listening on {sorted(listening)}, configured {sorted(endpoints.values())}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", help="jaeger binary (default: build with build.sh)")
    parser.add_argument("--keep-logs", action="store_true", help="print Jaeger's log")
    args = parser.parse_args(argv)
    binary = args.binary or default_binary()

    with tempfile.TemporaryDirectory(prefix="jaeger-smoke-") as tmp:
        workdir = Path(tmp)
        since_us = time.time_ns() // 1_000 - 60_000_000
        process, endpoints, startup = start_jaeger(binary, workdir)
        query = f"http://{endpoints['JAEGER_QUERY_HTTP_ENDPOINT']}"
        try:
            time.sleep(1.0)
            idle_mib = resident_mib(process.pid)
            problems = check_listening(process.pid, endpoints)
            slow = emit_request_trace(
                HTTPExporter(endpoint=f"http://{endpoints['JAEGER_OTLP_HTTP_ENDPOINT']}/v1/traces"),
                SLOW_NS,
            )
            fast = emit_request_trace(
                GRPCExporter(endpoint=endpoints["JAEGER_OTLP_GRPC_ENDPOINT"], insecure=True),
                FAST_NS,
            )
            for trace_id, duration_ns in ((slow, SLOW_NS), (fast, FAST_NS)):
                answer = wait_for_trace(query, trace_id)
                problems += check_classic_trace(answer, trace_id, duration_ns)
                answer = get_json(f"{query}/api/v3/traces/{trace_id}")
                problems += check_otlp_trace(answer, trace_id, duration_ns)
            problems += check_searches(query, slow, fast, since_us)
            loaded_mib = resident_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        log = (workdir / "jaeger.log").read_text()
        if args.keep_logs:
            print(log, file=sys.stderr)
        logged = [
            line
            for line in log.splitlines()
            if ("\twarn\t" in line or "\terror\t" in line) and EXPECTED_WARNING not in line
        ]
        problems += [f"jaeger logged: {line}" for line in logged]

    print(f"healthy after {startup:.2f} s; resident {idle_mib:.0f} MiB idle, {loaded_mib:.0f} MiB")
    print(f"slow trace {slow}, fast trace {fast}, query API {query}")
    for problem in problems:
        print("FAIL:", problem, file=sys.stderr)
    print("1 passed, 0 failed" if not problems else "0 passed, 1 failed", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
