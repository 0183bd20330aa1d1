"""The exporter process of serving.tracing_export: ``python -m serving.tracing_agent TARGET SECURE
SERVICE TIMEOUT_S``, started by the traced process, never by hand.

It reads batches of finished spans from stdin (each a 4-byte little-endian length, then the batch as
``marshal`` data: a list of plain tuples), writes them as OTLP protobuf bytes (serving.tracing_wire)
and sends them to the collector, one batch at a time, so none of that work holds the serving
process's GIL. It says it is ready with one byte on stdout once its imports are done, and ends when
stdin closes (the serving process stopped or died), after sending what it had read. A failed export is
logged (to the serving process's stderr, which it shares) and its spans dropped.
"""

from __future__ import annotations

import logging
import marshal
import signal
import sys
from typing import Any

from serving.tracing_export import Record, clock_offset_ns
from serving.tracing_wire import Encoder

log = logging.getLogger("serving.tracing")
_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Sender:
    """One gRPC channel to the collector, opened on the first export."""

    def __init__(self, target: str, secure: bool, service: str, timeout_s: float) -> None:
        self.target, self.secure, self.service, self.timeout_s = target, secure, service, timeout_s
        self.encoder = Encoder(service, clock_offset_ns())
        self._channel: Any = None

    def send(self, records: list[Record]) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        try:
            if self._channel is None:
                if self.secure:
                    self._channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials())
                else:
                    self._channel = grpc.insecure_channel(self.target)
                self._export = self._channel.unary_unary(
                    _EXPORT,
                    request_serializer=None,  # the request is already bytes
                    response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
                )
            self._export(self.encoder.encode(records), timeout=self.timeout_s)
        except Exception as error:  # the collector is down or slow: drop and go on
            log.warning("trace export to %s failed (%d spans dropped): %s", self.target, len(records), error)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


def main(argv: list[str]) -> int:
    target, secure, service, timeout_s = argv[0], argv[1] == "1", argv[2], float(argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the serving process; EOF stops this one
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import grpc  # noqa: F401  (imports paid before saying ready)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401

    sender = Sender(target, secure, service, timeout_s)
    sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()
    stream = sys.stdin.buffer
    while len(header := stream.read(4)) == 4:
        data = stream.read(int.from_bytes(header, "little"))
        sender.send(marshal.loads(data))
    sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
