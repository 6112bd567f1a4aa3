"""The OTLP span export's protobuf written as bytes, with what repeats encoded once.

The SDK's encoder (``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``)
builds a protobuf message for every attribute, value, span, scope and resource, and upb copies
each message into its parent (by serialising and parsing it) before the whole request is
serialised again: 36 to 45 us per span of this proxy on this project's machine, two thirds of
the span exporter thread's instructions. Most of what it encodes is the same on every request:
the resource and the instrumentation scopes of every span, and most attributes (the method,
route, server address, status code, model, format...).

:meth:`SpanEncoder.encode` writes the same ``ExportTraceServiceRequest`` straight to the wire
format, about 10 us per span (``tests/benchmarks/span_encoding_cost.py``):

* the resource and each instrumentation scope are encoded once, when first seen;
* a string or integer attribute ``(key, value)`` is encoded once and its bytes reused while it
  repeats (other types are encoded each time: ``True == 1 == 1.0`` in Python, and a cache keyed
  by value would send one type's bytes for another); the cache starts again from empty when it
  reaches :data:`ATTRIBUTE_CACHE_SIZE` entries, so values that never repeat (request ids, client
  ports) cost one miss each and cannot grow it;
* the rest of a span (ids, times, name, kind, status, flags, events, links) is a few byte
  strings joined.

The result parses to a message equal to the SDK's, field for field (its bytes are the SDK's
too: fields in number order, proto3 defaults omitted, an attribute whose value cannot be encoded
logged and left out); ``tests/test_span_encoding.py`` compares both on the spans of real
requests and on every value type. :class:`CachedEncodingSpanExporter` is the OTLP/HTTP span
exporter sending these bytes; everything else about the export (endpoint, headers, compression,
TLS, retries, timeouts, the size limit, the exporter's own metrics) is the SDK's.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanKind

_logger = logging.getLogger(__name__)

# Distinct attributes kept encoded; past it the cache starts again from empty.
ATTRIBUTE_CACHE_SIZE = 4096

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack
_INT64_MASK = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SMALL_VARINTS = [bytes((n,)) for n in range(128)]

# Span.kind: the protobuf enum is the SDK's value plus one (0 is SPAN_KIND_UNSPECIFIED).
_KIND_FIELD = {kind: b"\x30" + bytes((kind.value + 1,)) for kind in SpanKind}
# Span.flags (field 16, fixed32): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, and IS_REMOTE when set.
_FLAGS_LOCAL = b"\x85\x01" + _FIXED32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _FIXED32(0x300)
# Span.Link.flags (field 6, fixed32).
_LINK_FLAGS_LOCAL = b"\x35" + _FIXED32(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _FIXED32(0x300)


def _varint(number: int) -> bytes:
    if number < 128:
        return _SMALL_VARINTS[number]
    out = bytearray()
    while number > 127:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: its tag, the body's length and the body."""
    size = len(body)
    return tag + (_SMALL_VARINTS[size] if size < 128 else _varint(size)) + body


def _string(tag: bytes, text: str | None) -> bytes:
    """A string field, omitted when empty (proto3's default)."""
    return _field(tag, text.encode()) if text else b""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``'s body, the types checked in the SDK's order (``_encode_value``)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} is out of an int64's range")
        return b"\x18" + _varint(value & _INT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join([_field(b"\x0a", _key_value(str(key), item))
                                         for key, item in value.items()]))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue``'s body: the key (omitted when empty) and the value (always present)."""
    return _string(b"\x0a", key) + _field(b"\x12", _any_value(value))


def _attribute(tag: bytes, key: str, value: Any) -> bytes:
    """One ``KeyValue`` field; nothing, logged, when the value cannot be encoded (as the SDK's
    encoder leaves such an attribute out)."""
    try:
        return _field(tag, _key_value(key, value))
    except Exception as error:  # noqa: BLE001 - the attribute is left out, the rest encoded
        _logger.exception("Failed to encode key %s: %s", key, error)
        return b""


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` fields, uncached (resources, scopes, events and links)."""
    if not attributes:
        return b""
    return b"".join([_attribute(tag, key, value) for key, value in attributes.items()])


class SpanEncoder:
    """Encodes span batches as ``ExportTraceServiceRequest`` bytes; one per exporter.

    The batch span processor calls it from its one thread; from several it stays correct (the
    caches are dicts, whose reads and writes the interpreter makes atomic, and an entry lost to a
    race costs one more encoding).
    """

    def __init__(self, attribute_cache_size: int = ATTRIBUTE_CACHE_SIZE) -> None:
        self._attribute_cache_size = attribute_cache_size
        self._span_attributes: dict[tuple[str, Any], bytes] = {}
        self._resources: dict[Any, bytes] = {}
        self._scopes: dict[Any, bytes] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialised ``ExportTraceServiceRequest`` of ``spans``, grouped by resource, then
        by instrumentation scope, each in the order first seen (as the SDK groups them)."""
        groups: dict[Any, dict[Any, list[bytes]]] = {}
        # A batch's spans share a few resource and scope objects: each hashed once per batch.
        by_identity: dict[tuple[int, int], list[bytes]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            encoded = by_identity.get((id(resource), id(scope)))
            if encoded is None:
                encoded = by_identity[id(resource), id(scope)] = groups.setdefault(resource, {}).setdefault(scope, [])
            encoded.append(_field(b"\x12", self._span(span)))
        return b"".join([
            _field(b"\x0a", self._resource(resource)
                   + b"".join([_field(b"\x12", self._scope(scope) + b"".join(encoded)
                                      + _string(b"\x1a", scope.schema_url if scope else None))
                               for scope, encoded in scopes.items()])
                   + _string(b"\x1a", resource.schema_url))
            for resource, scopes in groups.items()
        ])

    def _resource(self, resource) -> bytes:
        """``ResourceSpans.resource``, encoded once per resource."""
        encoded = self._resources.get(resource)
        if encoded is None:
            encoded = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
            self._resources[resource] = encoded
        return encoded

    def _scope(self, scope) -> bytes:
        """``ScopeSpans.scope`` (an empty message for no scope), encoded once per scope."""
        encoded = self._scopes.get(scope)
        if encoded is None:
            body = b"" if scope is None else (
                _string(b"\x0a", scope.name) + _string(b"\x12", scope.version)
                + _attributes(b"\x1a", scope.attributes))
            encoded = _field(b"\x0a", body)
            self._scopes[scope] = encoded
        return encoded

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.context
        parent = span.parent
        parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
        trace_state = context.trace_state
        if trace_state:
            parts.append(_field(b"\x1a", ",".join([f"{key}={value}" for key, value in trace_state.items()]).encode()))
        if parent:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_field(b"\x2a", span.name.encode()))
        parts.append(_KIND_FIELD[span.kind])
        if span.start_time:
            parts += (b"\x39", _FIXED64(span.start_time))
        if span.end_time:
            parts += (b"\x41", _FIXED64(span.end_time))
        attributes = span.attributes
        if attributes:
            cache = self._span_attributes
            for key, value in attributes.items():
                # Only strings and ints are cached: no two of them are equal unless of one type,
                # where True == 1 == 1.0 would find the encoding of another type.
                value_type = type(value)
                if value_type is str or value_type is int:
                    encoded = cache.get((key, value))
                    if encoded is None:
                        encoded = _attribute(b"\x4a", key, value)
                        if encoded and len(cache) < self._attribute_cache_size:
                            cache[key, value] = encoded
                        elif encoded:
                            cache = self._span_attributes = {(key, value): encoded}
                else:
                    encoded = _attribute(b"\x4a", key, value)
                parts.append(encoded)
        if span.dropped_attributes:
            parts += (b"\x50", _varint(span.dropped_attributes))
        for event in span.events:
            parts.append(_field(b"\x5a", _event(event)))
        if span.dropped_events:
            parts += (b"\x60", _varint(span.dropped_events))
        for link in span.links:
            parts.append(_field(b"\x6a", _link(link)))
        if span.dropped_links:
            parts += (b"\x70", _varint(span.dropped_links))
        status = span.status
        if status is not None:
            code = status.status_code.value
            parts.append(_field(b"\x7a", _string(b"\x12", status.description)
                                + (b"\x18" + _varint(code) if code else b"")))
        parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
        return b"".join(parts)


def _event(event) -> bytes:
    return ((b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b"")
            + _string(b"\x12", event.name)
            + _attributes(b"\x1a", event.attributes)
            + (b"\x20" + _varint(event.dropped_attributes) if event.dropped_attributes else b""))


def _link(link) -> bytes:
    context = link.context
    return (b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")
            + _attributes(b"\x22", link.attributes)
            + (b"\x28" + _varint(link.dropped_attributes) if link.dropped_attributes else b"")
            + (_LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL))


class CachedEncodingSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, its batches encoded by a :class:`SpanEncoder`.

    ``export`` is the SDK's (``opentelemetry-exporter-otlp-proto-http``, pinned in
    requirements.lock) with the encoding replaced: the same size limit, the same exporter metrics,
    the same HTTP client with its retries and compression.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized_data = self._encoder.encode(spans)
            except Exception as error:  # noqa: BLE001 - as the SDK's exporter: the batch fails
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(serialized_data, self._max_request_size):
                _logger.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                                len(serialized_data), self._max_request_size)
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized_data)} bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes.")
                return SpanExportResult.FAILURE
            export_result = self._client.export(serialized_data)
            if not export_result.success:
                result.error = export_result.error
                result.error_attrs = ({HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                                      if export_result.status_code is not None else None)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
