"""The span export's own encoder writes exactly the SDK's OTLP bytes, and the collector reads them."""

from __future__ import annotations

import base64
import json
import logging
import math

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from inferwatch.proxy.telemetry.setup import FixedResource, _otlp_span_exporter
from inferwatch.proxy.telemetry.span_encoding import CachedEncodingSpanExporter, SpanEncoder
from inferwatch.stack.demo_model import SEED_EXAMPLE
from test_collector import spans_in, wait_for


def sdk_bytes(spans) -> bytes:
    return sdk_encode_spans(spans).SerializePartialToString()


def assert_encoded_as_the_sdk_does(encoder: SpanEncoder, spans) -> None:
    ours = encoder.encode(spans)
    assert ExportTraceServiceRequest.FromString(ours) == sdk_encode_spans(spans)
    assert ours == sdk_bytes(spans)


def requests_through_the_proxy(proxy) -> None:
    """Predictions of every outcome the proxy's spans record, each span with its attributes."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert proxy.post(json=SEED_EXAMPLE, headers={"X-Request-Id": "order-17"}).status_code == 200
    assert proxy.post("/invocations", json=SEED_EXAMPLE, headers={
        "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "tracestate": "vendor=opaque,other=1"}).status_code == 200
    assert proxy.post(json={"dataframe_split": {"columns": ["nope"], "data": [[1]]}}).status_code == 400  # MLflow's
    assert proxy.post(data=b"{", content_type="application/json").status_code == 400  # the proxy's own refusal
    assert proxy.post(data=b"a,b", content_type="text/plain").status_code == 415
    assert proxy.get("/nowhere").status_code == 404
    assert proxy.get("/healthz").status_code == 200


def test_the_spans_of_real_predictions_are_the_sdks_bytes_first_encoded_and_from_the_cache(start_app, mlflow_server):
    proxy = start_app(mlflow_server.url)
    requests_through_the_proxy(proxy)
    spans = proxy.spans.get_finished_spans()
    kinds = {span.kind for span in spans}
    assert kinds == {SpanKind.SERVER, SpanKind.CLIENT} and any(span.parent and span.parent.is_remote for span in spans)
    assert any(span.status.status_code is StatusCode.ERROR for span in spans)

    encoder = SpanEncoder()
    assert_encoded_as_the_sdk_does(encoder, spans)
    requests_through_the_proxy(proxy)  # the same attributes again, new ids and times: cache hits
    assert_encoded_as_the_sdk_does(encoder, proxy.spans.get_finished_spans())
    for span in spans:  # one span per batch, as a quiet proxy exports them
        assert_encoded_as_the_sdk_does(encoder, [span])


def test_a_chats_spans_with_their_genai_arrays_and_captured_text_are_the_sdks_bytes(start_app, genai_mlflow):
    proxy = start_app(genai_mlflow.url, model_name="genai", genai_capture_content="true")
    chat = {"messages": [{"role": "user", "content": "tell me a story, naïvely \u2603"}], "max_tokens": 3,
            "temperature": 0.5, "stop": ["END", "STOP"]}
    assert proxy.post("/invocations", json=chat).status_code == 200
    spans = proxy.spans.get_finished_spans()
    [client] = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert client.events and any(isinstance(value, tuple) for value in client.attributes.values())
    assert_encoded_as_the_sdk_does(SpanEncoder(), spans)


RESOURCE = FixedResource({"service.name": "inferwatch", "service.instance.id": "host:8000/1"}, "https://schema/1")
SCOPE = InstrumentationScope("inferwatch.proxy", "1.0", "https://schema/scope", {"scope.attribute": 3})


def span(attributes, name="POST /predict", kind=SpanKind.SERVER, parent=None, resource=RESOURCE, scope=SCOPE,
         span_id=0x00F067AA0BA902B7, **fields) -> ReadableSpan:
    context = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id, is_remote=False,
                          trace_flags=TraceFlags(1), trace_state=fields.pop("trace_state", None))
    return ReadableSpan(name=name, context=context, parent=parent, resource=resource, attributes=attributes,
                        kind=kind, instrumentation_scope=scope, start_time=fields.pop("start_time", 1_700_000_000_123_456_789),
                        end_time=fields.pop("end_time", 1_700_000_000_223_456_789), **fields)


EVERY_VALUE = {
    "string": "POST", "empty string": "", "unicode": "naïve \u2603 \U0001f600", "long": "x" * 300,
    "true": True, "false": False, "zero": 0, "one": 1, "negative": -1, "int64 min": -(1 << 63), "int64 max": (1 << 63) - 1,
    "float": 0.25, "negative float": -1.5, "nan": math.nan, "inf": math.inf, "float one": 1.0, "bytes": b"\x00\xff",
    "strings": ("a", "", "b"), "bools": (True, False), "ints": (1, -2, 1 << 40), "floats": (0.5, -0.0), "empty": (),
    "mapping": {"inner": 1, "nested": {"deep": ("x",)}}, "none": None, "": "an empty key",
}


def test_every_value_type_and_every_span_field_is_encoded_as_the_sdk_does():
    remote_parent = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x1111111111111111, is_remote=True)
    local_parent = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x2222222222222222, is_remote=False)
    spans = [
        span(EVERY_VALUE),
        span({"http.route": "/predict"}, parent=remote_parent, trace_state=TraceState([("vendor", "opaque"), ("b", "2")]),
             status=Status(StatusCode.ERROR, "model_rejected"), kind=SpanKind.CLIENT, scope=None),
        span({}, name="", parent=local_parent, status=Status(StatusCode.OK), start_time=0, end_time=0,
             kind=SpanKind.INTERNAL, resource=Resource.create({"other": "resource"})),
        span({"a": 1}, kind=SpanKind.PRODUCER, events=[Event("exception", {"exception.type": "ValueError", "n": 2}, 5),
                                                      Event("empty", None, 0)],
             links=[Link(remote_parent, {"link.kind": "follows"}), Link(local_parent)]),
        span({"a": 1}, kind=SpanKind.CONSUMER, scope=InstrumentationScope("", None)),
    ]
    assert_encoded_as_the_sdk_does(SpanEncoder(), spans)


def test_equal_values_of_different_types_never_share_an_encoding():
    """True == 1 == 1.0 and (1,) == (True,) in Python: a cache keyed by value alone would send one
    type's bytes for another."""
    encoder = SpanEncoder()
    for value in (1, True, 1.0, (1,), (True,), (1.0,), 1, "1", True):
        assert_encoded_as_the_sdk_does(encoder, [span({"v": value})])


def test_the_attribute_cache_is_bounded_and_values_that_never_repeat_still_encode_right():
    encoder = SpanEncoder(attribute_cache_size=8)
    for port in range(100):
        assert_encoded_as_the_sdk_does(encoder, [span({"client.port": 40_000 + port, "http.route": "/predict"})])
        assert len(encoder._span_attributes) <= 8


def test_an_attribute_that_cannot_be_encoded_is_left_out_and_logged_as_the_sdk_does(caplog):
    spans = [span({"before": 1, "too big": 1 << 64, "object": object(), "after": "kept"})]
    with caplog.at_level(logging.ERROR):
        ours = SpanEncoder().encode(spans)
    assert ours == sdk_bytes(spans)
    assert [record.getMessage().split(":")[0] for record in caplog.records
            if record.name.endswith("span_encoding")] == ["Failed to encode key too big", "Failed to encode key object"]


def test_the_dropped_counts_are_encoded_as_the_sdk_does():
    events, links = BoundedList(maxlen=1), BoundedList(maxlen=1)
    events.extend([Event("e", {"x": 1}, 7), Event("f", None, 8), Event("g", None, 9)])
    links.extend([Link(span({}).context), Link(span({}).context)])
    event_attributes = BoundedAttributes(maxlen=1, attributes={"x": 1, "y": 2})
    events.append(Event("bounded", event_attributes, 10))  # dropped itself: the list is full
    dropping = span(BoundedAttributes(maxlen=2, attributes={"a": 1, "b": 2, "c": 3}), events=events, links=links)
    assert (dropping.dropped_attributes, dropping.dropped_events, dropping.dropped_links) == (1, 3, 1)
    bounded_event = Event("bounded", event_attributes, 10)
    assert bounded_event.dropped_attributes == 1
    assert_encoded_as_the_sdk_does(SpanEncoder(), [dropping, span({}, events=[bounded_event])])


def normal(value):
    """A span's JSON without its empty fields (the collector writes some that protobuf's JSON omits)."""
    if isinstance(value, dict):
        return {key: normal(item) for key, item in value.items() if item not in ({}, [], "", None)}
    if isinstance(value, list):
        return [normal(item) for item in value]
    return value


def otlp_json(message) -> list[dict]:
    """The spans of an ``ExportTraceServiceRequest`` as the collector's file exporter writes them
    (ids in hex, enums as numbers), fields that are empty left out."""
    spans = []
    for resource in MessageToDict(message, use_integers_for_enums=True)["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for encoded in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in encoded:
                        encoded[key] = base64.b64decode(encoded[key]).hex()
                spans.append(normal(encoded))
    return spans


def test_a_real_collector_receives_every_span_as_the_sdks_encoding_describes_it(start_collector, start_app,
                                                                                    mlflow_server, monkeypatch):
    collector = start_collector(OTELCOL_TRACES_SAMPLE_PERCENT="100", OTELCOL_TRACES_DECISION_WAIT="1s")
    proxy = start_app(mlflow_server.url)
    requests_through_the_proxy(proxy)
    spans = proxy.spans.get_finished_spans()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.otlp_http)  # read by the SDK's exporter
    exporter = _otlp_span_exporter({})
    assert isinstance(exporter, CachedEncodingSpanExporter)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    wait_for(lambda: len(spans_in(collector.traces_file)) >= len(spans), timeout=30, what="the spans in the trace file")
    received = sorted(json.dumps(normal(span), sort_keys=True) for span in spans_in(collector.traces_file))
    expected = sorted(json.dumps(span, sort_keys=True) for span in otlp_json(sdk_encode_spans(spans)))
    assert received == expected


def test_over_grpc_the_sdks_own_span_exporter_is_used():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    exporter = _otlp_span_exporter({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})
    assert isinstance(exporter, GrpcSpanExporter)
    exporter.shutdown()
