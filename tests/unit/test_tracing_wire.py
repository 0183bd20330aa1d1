"""serving.tracing_wire writes OTLP bytes by hand: parsed with the published OTLP messages, they must
equal a request built field by field with those messages, for every kind of value and span."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from serving.tracing_wire import Encoder

OFFSET = 1_700_000_000_000_000_000


def _values(values: dict[str, Any]) -> list[KeyValue]:
    pairs = []
    for key, value in values.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=str(value))
        pairs.append(KeyValue(key=key, value=any_value))
    return pairs


def _expected(records: list[Any], service: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_values({"service.name": service}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tensorgate"
    for trace_id, span_id, parent_id, name, kind, start, end, attributes, events, links, error in records:
        span = Span(
            trace_id=trace_id.to_bytes(16, "big"),
            span_id=span_id.to_bytes(8, "big"),
            name=name,
            kind=kind,
            start_time_unix_nano=start + OFFSET,
            end_time_unix_nano=end + OFFSET,
        )
        if parent_id:
            span.parent_span_id = parent_id.to_bytes(8, "big")
        span.attributes.extend(_values(attributes or {}))
        for event_name, at, values in events or ():
            span.events.add(name=event_name, time_unix_nano=at + OFFSET).attributes.extend(_values(values or {}))
        for link_trace, link_span in links or ():
            span.links.add(trace_id=link_trace.to_bytes(16, "big"), span_id=link_span.to_bytes(8, "big"))
        if error is not None:
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = error
        scope_spans.spans.append(span)
    return request


def _record(generator: random.Random) -> tuple[Any, ...]:
    values = generator.choice(
        [
            None,
            {},
            {"s": "text", "unicode": "é ✓", "empty": "", "n": -5, "zero": 0, "big": 2**63 - 1, "small": -(2**63)},
            {"f": 0.25, "negative": -1e300, "inf": math.inf, "t": True, "false": False, "status": 200},
        ]
    )
    events = generator.choice([None, [], [("attempt", 7, {"attempt": 1, "code": "OK"}), ("retry", 8, {})]])
    links = generator.choice([None, [(generator.getrandbits(128) or 1, generator.getrandbits(64) or 1)] * 2])
    return (
        generator.getrandbits(128) or 1,
        generator.getrandbits(64) or 1,
        generator.choice([0, generator.getrandbits(64) or 1]),
        generator.choice(["decode json", "POST /v1/models/cnn:predict", "ünïcode"]),
        generator.choice([1, 2]),
        generator.randrange(10**12),
        generator.randrange(10**12, 2 * 10**12),
        values,
        events,
        links,
        generator.choice([None, "", "KeyError: 'x'"]),
    )


@pytest.mark.parametrize("seed", range(3))
def test_the_bytes_parse_to_the_request_the_published_messages_build(seed: int) -> None:
    generator = random.Random(seed)
    records = [_record(generator) for _ in range(300)]
    encoder = Encoder("unit ✓", OFFSET)
    for _ in range(2):  # the second time from the encoder's caches
        parsed = ExportTraceServiceRequest.FromString(encoder.encode(records))
        assert parsed == _expected(records, "unit ✓")


def test_a_nan_attribute_and_an_empty_batch_encode() -> None:
    parsed = ExportTraceServiceRequest.FromString(
        Encoder("unit").encode([(1, 2, 0, "x", 1, 0, 1, {"nan": math.nan}, None, None, None)])
    )
    (span,) = parsed.resource_spans[0].scope_spans[0].spans
    assert math.isnan(span.attributes[0].value.double_value)
    empty = ExportTraceServiceRequest.FromString(Encoder("unit").encode([]))
    assert empty.resource_spans[0].resource.attributes[0].value.string_value == "unit"
    assert not empty.resource_spans[0].scope_spans[0].spans
