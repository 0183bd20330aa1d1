"""One structured JSON line per request, from both fronts, plus the request metrics."""

from __future__ import annotations

import logging
import time

import orjson

from serving.gateway.context import CallContext
from serving.gateway.metrics import Metrics

ACCESS = logging.getLogger("tensorgate.access")


class JsonFormatter(logging.Formatter):
    """Log records as JSON lines; access records carry their fields in ``record.fields``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        line = {"ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name}
        if fields is not None:
            line.update(fields)
        else:
            line["message"] = record.getMessage()
            if record.exc_info:
                line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode("utf-8")


def record(metrics: Metrics, protocol: str, verb: str, route: str, status: int | str, call: CallContext) -> None:
    latency = time.perf_counter() - call.started
    metrics.requests.labels(protocol, call.method, call.servable, str(status)).inc()
    metrics.latency.labels(protocol, call.method).observe(latency)
    if ACCESS.isEnabledFor(logging.INFO):
        fields = {
            "protocol": protocol,
            "method": verb,
            "route": route,
            "servable": call.servable,
            "version": call.version,
            "status": status,
            "latency_ms": round(latency * 1000, 3),
            "request_id": call.request_id,
        }
        if call.degraded:
            fields["degraded"] = True
        ACCESS.info("access", extra={"fields": fields})


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
