"""Smoke test of the collector build and config.yaml with synthetic OTLP data (no service needed).

Starts the collector on free loopback ports, sends it metrics under the OTel names of
service/inferwatch/contract/metrics.py and a few traces through the OpenTelemetry SDK, then checks
what comes out: the exact Prometheus names, types, labels and values on the prometheus exporter
(percent scaling, MiB, summed-away attributes, default route, ``le`` edges), that nothing outside
the contract appears, and that tail sampling kept the failed and the slow trace and nothing else.

Usage (any Python with the project's dependencies; the binary defaults to build.sh's)::

    python otel-collector/smoke_test.py [--binary PATH] [--keep-logs]

Exit status 0 when every check passes; each failed check is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "service"))

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.metrics import CallbackOptions, Observation  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: E402
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.trace import Status, StatusCode  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from inferwatch.contract import metrics as mm  # noqa: E402
from inferwatch.render.collector import contract_names  # noqa: E402

SERVICE_NAME = "inferwatch-smoke"
UNMAPPED_METRIC = "inferwatch.smoke.unmapped"
MIB = 1024 * 1024
MEMORY_USED_BYTES = 1536 * MIB + MIB // 2  # an int, as psutil reports it: 1536.5 MiB
STARTUP_TIMEOUT = 30.0
SCRAPE_TIMEOUT = 20.0
TRACE_TIMEOUT = 30.0

POST_PREDICT_OK = {"method": "POST", "route": "/predict", "status": "200"}
POST_PREDICT_ERROR = {"method": "POST", "route": "/predict", "status": "500"}
GET_UNMATCHED = {"method": "GET", "route": mm.UNMATCHED_ROUTE, "status": "404"}
MODEL = {"model": "diabetes", "model_version": "2"}
MODEL_ATTRIBUTES = {mm.MODEL_NAME: "diabetes", mm.MODEL_VERSION: "2"}

# (sample name, labels) -> value, computed by hand from what emit_metrics() records.
EXPECTED_SAMPLES = {
    ("http_requests_total", frozenset(POST_PREDICT_OK.items())): 3.0,
    ("http_requests_total", frozenset(POST_PREDICT_ERROR.items())): 1.0,
    ("http_requests_total", frozenset(GET_UNMATCHED.items())): 1.0,
    ("http_request_duration_seconds_count", frozenset(POST_PREDICT_OK.items())): 3.0,
    ("http_request_duration_seconds_sum", frozenset(POST_PREDICT_OK.items())): 2.35,
    ("http_requests_throughput", frozenset()): 12.5,
    ("active_requests", frozenset()): 1.0,
    ("prediction_success_total", frozenset(MODEL.items())): 3.0,
    ("prediction_failure_total", frozenset(MODEL.items())): 3.0,
    ("prediction_failure_by_reason_total", frozenset({**MODEL, "reason": "timeout"}.items())): 1.0,
    ("prediction_failure_by_reason_total", frozenset({**MODEL, "reason": "bad_input"}.items())): 2.0,
    ("model_info", frozenset({**MODEL, "flavor": "sklearn", "signature": "true", "reference": "true"}.items())): 1.0,
    ("model_feature_bin_total", frozenset({**MODEL, "feature": "Glucose", "bin": "00"}.items())): 4.0,
    ("model_feature_expected_share", frozenset({**MODEL, "feature": "Glucose", "bin": "00"}.items())): 0.25,
    ("model_feature_missing_total", frozenset({**MODEL, "feature": "Glucose"}.items())): 1.0,
    ("model_input_rows_total", frozenset(MODEL.items())): 5.0,
    ("model_input_violation_total", frozenset({**MODEL, "column": "Age", "kind": "missing"}.items())): 2.0,
    ("model_input_unreadable_total", frozenset({**MODEL, "format": "csv"}.items())): 1.0,
    ("model_prediction_bin_total", frozenset({**MODEL, "bin": "1"}.items())): 3.0,
    ("model_prediction_expected_share", frozenset({**MODEL, "bin": "1"}.items())): 0.3,
    ("model_feedback_labels_total", frozenset(MODEL.items())): 2.0,
    ("model_feedback_correct_total", frozenset(MODEL.items())): 1.0,
    ("model_feedback_absolute_error_count", frozenset(MODEL.items())): 2.0,
    ("model_feedback_absolute_error_sum", frozenset(MODEL.items())): 1.5,
    ("model_feedback_squared_error_total", frozenset(MODEL.items())): 1.25,
    ("model_feedback_rejected_total", frozenset({**MODEL, "reason": "token_expired"}.items())): 1.0,
    ("inference_log_records_total", frozenset({**MODEL, "destination": "file"}.items())): 9.0,
    ("inference_log_dropped_total", frozenset({**MODEL, "reason": "write_error"}.items())): 2.0,
    ("system_cpu_usage", frozenset()): 25.0,
    ("system_ram_usage", frozenset()): 50.0,
    ("system_memory_usage_mb", frozenset()): 1536.5,
    ("system_disk_usage", frozenset({"mountpoint": "/"}.items())): 75.0,
}
# Cumulative bucket counts of the POST /predict 200 series (0.05 s, 0.3 s and 2.0 s observed).
EXPECTED_OK_BUCKETS = {
    "0.005": 0, "0.01": 0, "0.025": 0, "0.05": 1, "0.075": 1, "0.1": 1, "0.25": 1, "0.5": 2,
    "0.75": 2, "1": 2, "1.5": 2, "2": 3, "2.5": 3, "5": 3, "7.5": 3, "10": 3, "+Inf": 3,
}
EXPECTED_TYPES = {mapping.prometheus_name: mapping.prometheus_type.value for mapping in mm.MAPPINGS}
# Labels the exporter adds from the resource (service.name -> job); not part of the contract.
RESOURCE_LABELS = {"job", "instance"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def default_binary() -> str:
    out = subprocess.run(
        [str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return out.strip().splitlines()[-1]


def start_collector(binary: str, workdir: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    ports = {name: free_port() for name in ("grpc", "http", "prometheus", "health", "telemetry")}
    env = dict(
        os.environ,
        OTELCOL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{ports['grpc']}",
        OTELCOL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{ports['http']}",
        OTELCOL_PROMETHEUS_ENDPOINT=f"127.0.0.1:{ports['prometheus']}",
        OTELCOL_HEALTH_ENDPOINT=f"127.0.0.1:{ports['health']}",
        OTELCOL_TELEMETRY_PORT=str(ports["telemetry"]),
        OTELCOL_TRACES_FILE=str(workdir / "traces.jsonl"),
        OTELCOL_LOGS_FILE=str(workdir / "inference-log" / "otlp.jsonl"),
        OTELCOL_TRACES_SAMPLE_PERCENT="0",
        OTELCOL_TRACES_DECISION_WAIT="1s",
    )
    with open(workdir / "collector.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [binary, "--config", str(HERE / "config.yaml")], env=env, stdout=log, stderr=log
        )
    urls = {
        "otlp": f"127.0.0.1:{ports['grpc']}",
        "metrics": f"http://127.0.0.1:{ports['prometheus']}/metrics",
        "health": f"http://127.0.0.1:{ports['health']}/",
        "traces": str(workdir / "traces.jsonl"),
    }
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while http_get(urls["health"])[0] != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"collector did not become healthy; see {workdir / 'collector.log'}")
        time.sleep(0.2)
    return process, urls


def emit_metrics(otlp_endpoint: str) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_endpoint, insecure=True),
        export_interval_millis=3_600_000,  # exported by force_flush below
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": SERVICE_NAME}),
        metric_readers=[reader],
        views=[
            View(
                instrument_name=mm.HTTP_SERVER_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(mm.LATENCY_BUCKETS_SECONDS),
            )
        ],
    )
    meter = provider.get_meter("inferwatch.smoke")
    duration = meter.create_histogram(mm.HTTP_SERVER_DURATION, unit="s")
    ok = {
        mm.HTTP_REQUEST_METHOD: "POST",
        mm.HTTP_ROUTE: "/predict",
        mm.HTTP_RESPONSE_STATUS_CODE: 200,
        "url.scheme": "http",
    }
    duration.record(0.05, ok)
    duration.record(0.3, {**ok, "url.scheme": "https"})  # summed with the line above
    duration.record(2.0, ok)  # exactly on the 2 s edge: counted in le="2"
    duration.record(3.0, {**ok, mm.HTTP_RESPONSE_STATUS_CODE: 500, mm.ERROR_TYPE: "500"})
    duration.record(  # no http.route: the route label defaults to "unmatched"
        0.01, {mm.HTTP_REQUEST_METHOD: "GET", mm.HTTP_RESPONSE_STATUS_CODE: 404}
    )

    successes = meter.create_counter(mm.PREDICTION_SUCCESSES)
    successes.add(2, {**MODEL_ATTRIBUTES, "smoke.shard": "a"})
    successes.add(1, {**MODEL_ATTRIBUTES, "smoke.shard": "b"})
    failures = meter.create_counter(mm.PREDICTION_FAILURES)
    failures.add(1, {**MODEL_ATTRIBUTES, mm.ERROR_TYPE: "timeout"})
    failures.add(2, {**MODEL_ATTRIBUTES, mm.ERROR_TYPE: "bad_input"})
    emit_model_quality(meter)

    active = meter.create_up_down_counter(mm.HTTP_SERVER_ACTIVE_REQUESTS)
    active.add(2, {mm.HTTP_REQUEST_METHOD: "POST", "url.scheme": "http"})
    active.add(-1, {mm.HTTP_REQUEST_METHOD: "POST", "url.scheme": "http"})

    def observe(value, attributes=None):
        return lambda _options: [Observation(value, attributes)]

    meter.create_observable_gauge(mm.SYSTEM_CPU_UTILIZATION, [observe(0.25)], unit="1")
    meter.create_observable_gauge(
        mm.SYSTEM_MEMORY_UTILIZATION, [observe(0.5, {"system.memory.state": "used"})], unit="1"
    )
    meter.create_observable_up_down_counter(
        mm.SYSTEM_MEMORY_USAGE,
        [observe(MEMORY_USED_BYTES, {"system.memory.state": "used"})],
        unit="By",
    )
    meter.create_observable_gauge(
        mm.SYSTEM_FILESYSTEM_UTILIZATION, [observe(0.75, {mm.FILESYSTEM_MOUNTPOINT: "/"})], unit="1"
    )
    meter.create_observable_gauge(mm.HTTP_SERVER_THROUGHPUT, [observe(12.5)], unit="{request}/s")
    meter.create_counter(UNMAPPED_METRIC).add(7)

    provider.force_flush()
    provider.shutdown()


def emit_model_quality(meter) -> None:
    """Every model-quality instrument, shaped as inferwatch.proxy.quality and .feedback record them."""
    model = MODEL_ATTRIBUTES
    glucose = {**model, mm.MODEL_FEATURE: "Glucose"}

    def observe(value, attributes):
        return lambda _options: [Observation(value, attributes)]

    meter.create_observable_gauge(mm.MODEL_INFO, [observe(1, {
        **model, mm.MODEL_FLAVOR: "sklearn", mm.MODEL_SIGNATURE: "true", mm.MODEL_REFERENCE: "true"})])
    meter.create_observable_counter(mm.MODEL_FEATURE_VALUES, [observe(4, {**glucose, mm.MODEL_BIN: "00"})])
    meter.create_observable_gauge(mm.MODEL_FEATURE_EXPECTED_SHARE, [observe(0.25, {**glucose, mm.MODEL_BIN: "00"})])
    meter.create_observable_counter(mm.MODEL_FEATURE_MISSING, [observe(1, glucose)])
    meter.create_observable_counter(mm.MODEL_INPUT_ROWS, [observe(5, model)])
    meter.create_observable_counter(mm.MODEL_INPUT_VIOLATIONS, [observe(2, {
        **model, mm.MODEL_INPUT_COLUMN: "Age", mm.MODEL_VIOLATION_KIND: "missing"})])
    meter.create_observable_counter(mm.MODEL_INPUT_UNREADABLE, [observe(1, {**model, mm.MODEL_INPUT_FORMAT: "csv"})])
    meter.create_observable_counter(mm.MODEL_PREDICTION_VALUES, [observe(3, {**model, mm.MODEL_BIN: "1"})])
    meter.create_observable_gauge(mm.MODEL_PREDICTION_EXPECTED_SHARE, [observe(0.3, {**model, mm.MODEL_BIN: "1"})])
    meter.create_counter(mm.MODEL_FEEDBACK_LABELS).add(2, model)
    meter.create_counter(mm.MODEL_FEEDBACK_CORRECT).add(1, model)
    error = meter.create_histogram(mm.MODEL_FEEDBACK_ABSOLUTE_ERROR, explicit_bucket_boundaries_advisory=[0.5, 1, 2])
    error.record(0.5, model)
    error.record(1.0, model)
    meter.create_counter(mm.MODEL_FEEDBACK_SQUARED_ERROR).add(1.25, model)
    meter.create_counter(mm.MODEL_FEEDBACK_REJECTED).add(1, {**model, mm.ERROR_TYPE: "token_expired"})
    # the inference log's counts (inferwatch.proxy.inference_log)
    meter.create_observable_counter(mm.INFERENCE_LOG_RECORDS, [observe(9, {**model, mm.INFERENCE_LOG_DESTINATION: "file"})])
    meter.create_observable_counter(mm.INFERENCE_LOG_DROPPED, [observe(2, {**model, mm.ERROR_TYPE: "write_error"})])


def emit_traces(otlp_endpoint: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("inferwatch.smoke")
    for _ in range(5):
        with tracer.start_as_current_span("ordinary"):
            pass
    with tracer.start_as_current_span("failed") as span:
        span.set_status(Status(StatusCode.ERROR, "smoke"))
    end = time.time_ns()
    tracer.start_span("slow", start_time=end - 2_500_000_000).end(end_time=end)
    provider.force_flush()
    provider.shutdown()


def scrape_when_complete(url: str) -> str:
    """The exporter's text once every contract family is there (exports arrive in parts)."""
    deadline = time.monotonic() + SCRAPE_TIMEOUT
    wanted = set(contract_names())
    while True:
        text = http_get(url)[1]
        present = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.MULTILINE)}
        if wanted <= present or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def check_metrics(text: str) -> list[str]:
    problems = []
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    for name, expected in EXPECTED_TYPES.items():
        if types.get(name) != expected:
            problems.append(f"TYPE of {name}: {types.get(name)!r}, expected {expected!r}")
    extra = set(types) - set(EXPECTED_TYPES) - {"target_info"}
    if extra:
        problems.append(f"families outside the contract: {sorted(extra)}")

    seen = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in RESOURCE_LABELS}
            seen[(sample.name, frozenset(labels.items()))] = sample.value
    for key, expected in EXPECTED_SAMPLES.items():
        if key not in seen:
            problems.append(f"missing sample {key[0]}{dict(key[1])}")
        elif abs(seen[key] - expected) > 1e-9 * max(1.0, abs(expected)):
            problems.append(f"{key[0]}{dict(key[1])} = {seen[key]}, expected {expected}")
    for name in ("http_requests_total", "prediction_failure_by_reason_total"):
        got = {k for k in seen if k[0] == name}
        want = {k for k in EXPECTED_SAMPLES if k[0] == name}
        if got != want:
            problems.append(f"{name} series: {sorted(dict(k[1]).items() for k in got)}")

    ok_selector = r'method="POST",route="/predict",status="200"'
    buckets = {
        le: float(value)
        for labels, value in re.findall(
            r"^http_request_duration_seconds_bucket\{([^}]*)\} (\S+)$", text, re.MULTILINE
        )
        if ok_selector in labels
        for le in re.findall(r'le="([^"]*)"', labels)
    }
    if buckets != {le: float(n) for le, n in EXPECTED_OK_BUCKETS.items()}:
        problems.append(f"le buckets of POST /predict 200: {buckets}")
    return problems


def traced_span_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines() if path.exists() else []:
        for resource_spans in json.loads(line).get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                names += [span["name"] for span in scope_spans.get("spans", [])]
    return names


def check_traces(path: Path) -> list[str]:
    deadline = time.monotonic() + TRACE_TIMEOUT
    while sorted(names := traced_span_names(path)) != ["failed", "slow"]:
        if time.monotonic() > deadline:
            return [f"traces kept: {sorted(names)}, expected ['failed', 'slow']"]
        time.sleep(0.5)
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", help="collector binary (default: build with build.sh)")
    parser.add_argument("--keep-logs", action="store_true", help="print the collector log")
    args = parser.parse_args(argv)
    binary = args.binary or default_binary()

    with tempfile.TemporaryDirectory(prefix="otelcol-smoke-") as tmp:
        workdir = Path(tmp)
        process, urls = start_collector(binary, workdir)
        try:
            emit_metrics(urls["otlp"])
            emit_traces(urls["otlp"])
            text = scrape_when_complete(urls["metrics"])
            problems = check_metrics(text) + check_traces(Path(urls["traces"]))
        finally:
            process.terminate()
            process.wait(timeout=30)
        log = (workdir / "collector.log").read_text()
        if args.keep_logs:
            print(log, file=sys.stderr)
        logged = [line for line in log.splitlines() if "\twarn\t" in line or "\terror\t" in line]
        problems += [f"collector logged: {line}" for line in logged]

    print(text)
    for problem in problems:
        print("FAIL:", problem, file=sys.stderr)
    print("1 passed, 0 failed" if not problems else "0 passed, 1 failed", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
