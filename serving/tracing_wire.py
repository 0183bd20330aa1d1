"""Finished spans (serving.tracing_export's records) written straight into the protobuf wire format of an
OTLP ``ExportTraceServiceRequest``, with no message objects in between.

Building OpenTelemetry's generated messages cost the exporter process about 8 us a span (a message per
span, attribute, value and event), more than recording the span; writing the bytes costs about a
third of that. The layout follows ``opentelemetry/proto/trace/v1/trace.proto`` and
``common/v1/common.proto`` (field numbers in the comments); tests parse the result with the published
messages and compare every field.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

_SMALL = [bytes((value,)) for value in range(128)]
_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_INT64 = (1 << 64) - 1
_CACHE_LIMIT = 4096  # encoded attributes kept for reuse (servable names, methods, paths repeat)


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """AnyValue: string_value 1, bool_value 2, int_value 3, double_value 4 (anything else as its text)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & _INT64)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    return _delimited(b"\x0a", str(value).encode("utf-8", "replace"))


class _Attributes:
    """Encoded KeyValues (key 1, value 2), each behind ``tag``; repeated pairs are encoded once."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.cache: dict[tuple[str, type, Any], bytes] = {}

    def encode(self, values: Mapping[str, Any]) -> list[bytes]:
        cache, out = self.cache, []
        for key, value in values.items():
            cached = (key, type(value), value)
            try:
                pair = cache.get(cached)
            except TypeError:  # an unhashable value: encoded as its text, never kept
                pair = None
                cached = None  # type: ignore[assignment]
            if pair is None:
                pair = _delimited(self.tag, _delimited(b"\x0a", key.encode()) + _delimited(b"\x12", _any_value(value)))
                if cached is not None:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[cached] = pair
            out.append(pair)
        return out


class Encoder:
    """``encode(records)``: the bytes of one ExportTraceServiceRequest from ``service``; ``offset_ns`` is
    added to the records' times (monotonic clock -> Unix time)."""

    def __init__(self, service: str, offset_ns: int = 0) -> None:
        self.offset_ns = offset_ns
        self._span_attributes = _Attributes(b"\x4a")  # Span.attributes = 9
        self._event_attributes = _Attributes(b"\x1a")  # Event.attributes = 3
        self._names: dict[str, bytes] = {}
        resource = _delimited(b"\x0a", b"".join(_Attributes(b"\x0a").encode({"service.name": service})))
        scope = _delimited(b"\x0a", _delimited(b"\x0a", b"tensorgate"))  # ScopeSpans.scope: name 1
        self._resource, self._scope = resource, scope

    def _name(self, name: str) -> bytes:  # Span.name = 5, cached per name
        encoded = self._names.get(name)
        if encoded is None:
            encoded = _delimited(b"\x2a", name.encode("utf-8", "replace"))
            if len(self._names) < _CACHE_LIMIT:
                self._names[name] = encoded
        return encoded

    def encode(self, records: list[Any]) -> bytes:
        spans, offset = [], self.offset_ns
        span_attributes, event_attributes = self._span_attributes.encode, self._event_attributes.encode
        for trace_id, span_id, parent_id, name, kind, start, end, attributes, events, links, error in records:
            # trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8 (fixed64)
            parts = [b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big")]
            if parent_id:
                parts += (b"\x22\x08", parent_id.to_bytes(8, "big"))
            parts += (
                self._name(name),
                b"\x30",
                _SMALL[kind],
                b"\x39",
                _fixed64(start + offset),
                b"\x41",
                _fixed64(end + offset),
            )
            if attributes:
                parts += span_attributes(attributes)
            for event_name, at, values in events or ():  # events 11: time 1 (fixed64), name 2, attributes 3
                body = b"\x09" + _fixed64(at + offset) + _delimited(b"\x12", event_name.encode("utf-8", "replace"))
                if values:
                    body += b"".join(event_attributes(values))
                parts.append(_delimited(b"\x5a", body))
            for link_trace, link_span in links or ():  # links 13: trace_id 1, span_id 2
                body = b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08" + link_span.to_bytes(8, "big")
                parts.append(_delimited(b"\x6a", body))
            if error is not None:  # status 15: message 2, code 3 (2: ERROR)
                parts.append(_delimited(b"\x7a", _delimited(b"\x12", error.encode("utf-8", "replace")) + b"\x18\x02"))
            spans.append(_delimited(b"\x12", b"".join(parts)))  # ScopeSpans.spans = 2
        scope_spans = _delimited(b"\x12", self._scope + b"".join(spans))  # ResourceSpans.scope_spans = 2
        return _delimited(b"\x0a", self._resource + scope_spans)  # ExportTraceServiceRequest.resource_spans = 1
