"""A small OTLP/gRPC trace receiver built on the published OTLP protos (``opentelemetry-proto``).

It answers ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` as a collector does and keeps
the spans in memory, so the tracing tests and the overhead benchmark need no collector binary:

    receiver = Receiver().start()          # listens on 127.0.0.1:<port>; receiver.endpoint
    ...                                    # servers export to it
    receiver.spans()                       # [Span(trace_id, span_id, parent_id, name, service, ...)]
    receiver.stop()
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[str, ...] = ()  # trace ids of the linked spans
    events: tuple[tuple[str, dict[str, Any]], ...] = ()  # (name, attributes)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else None


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self.requests = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def add(self, request: Any) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(resource.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            service=service,
                            kind=span.kind,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple(link.trace_id.hex() for link in span.links),
                            events=tuple(
                                (event.name, {a.key: _value(a.value) for a in event.attributes})
                                for event in span.events
                            ),
                        )
                    )
        with self._lock:
            self._spans.extend(received)
            self.requests += 1

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
