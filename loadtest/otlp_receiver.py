"""A small OTLP/gRPC trace receiver built on the published OTLP protos (``opentelemetry-proto``).

It answers ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` as a collector does and keeps
the spans in memory, so the tracing tests and the overhead benchmark need no collector binary:

    receiver = Receiver().start()          # listens on 127.0.0.1:<port>; receiver.endpoint
    ...                                    # servers export to it
    receiver.spans()                       # [Span(trace_id, span_id, parent_id, name, service, ...)]
    receiver.stop()

As a process of its own (the overhead benchmark's collector, so that receiving spans does not run in
the load generator's interpreter): ``python -m loadtest.otlp_receiver --port P --stats FILE [--nice N]``
parses each export (protobuf's C parser, as a collector would) and only counts it: after every export
FILE holds ``{"spans": n, "exports": m}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
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


class _Counter(trace_service_pb2_grpc.TraceServiceServicer):
    """Counts spans and exports, decoding nothing into Python objects; writes the counts to ``stats``."""

    def __init__(self, stats: Path) -> None:
        self.stats, self.spans, self.exports = stats, 0, 0
        self._lock = threading.Lock()

    def _write(self) -> None:
        partial = self.stats.with_suffix(".partial")
        partial.write_text(json.dumps({"spans": self.spans, "exports": self.exports}))
        partial.replace(self.stats)

    def Export(self, request: Any, context: Any) -> Any:
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._lock:
            self.spans += count
            self.exports += 1
            self._write()
        return trace_service_pb2.ExportTraceServiceResponse()


class Receiver:
    def __init__(self, port: int = 0, service: Any = None) -> None:
        """``service``: the TraceService servicer (default: keep every span, for ``spans()``)."""
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service or _Service(self), self._server)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.otlp_receiver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 to listen on")
    parser.add_argument("--stats", type=Path, required=True, help="file that holds the counts")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority by N (default 0)")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    counter = _Counter(args.stats)
    receiver = Receiver(args.port, counter).start()
    counter._write()  # the file appears once the port listens
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(f"OTLP receiver on {receiver.endpoint}, counting spans into {args.stats}", flush=True)
    while not stopped.wait(0.5):
        pass
    receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
