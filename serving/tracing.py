"""OpenTelemetry tracing for the gateway and the model server: off unless configured.

``configure(endpoint, ratio, service)`` sets the process's tracer up: spans go to an OTLP/gRPC
collector at ``endpoint``; a request with no sampled parent is traced with probability ``ratio``
(a parent's decision is always followed, so a trace is never cut in half between the processes).
The W3C ``traceparent`` travels in HTTP headers and gRPC metadata. Until ``configure`` runs nothing
of OpenTelemetry is imported, and every hook below is a call that returns a shared null context.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

_NULL = contextlib.nullcontext()
_active: _Tracing | None = None
# Within a sampled request: True (its spans are recorded). Within an unsampled one: the traceparent to
# send on (flags 00, so the next process does not sample it either). Unsampled requests never reach
# OpenTelemetry's SDK: at 10% sampling, nine requests in ten cost a random draw and two context
# variable sets.
_SAMPLED: ContextVar[bool] = ContextVar("tensorgate_trace_sampled", default=False)
_FORWARD: ContextVar[str | None] = ContextVar("tensorgate_trace_forward", default=None)


class _Tracing:
    def __init__(self, endpoint: str, ratio: float, service: str) -> None:
        from opentelemetry import context, trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            sampler=ParentBased(ALWAYS_ON),  # roots are decided by server_span, before the SDK is asked
        )
        self.ratio = ratio
        insecure = not endpoint.startswith("https://")
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=insecure)
        # batches leave every 5 s by default (OTEL_BSP_SCHEDULE_DELAY, in ms, changes it)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("tensorgate")
        self.propagator = TraceContextTextMapPropagator()
        self.trace = trace
        self.context = context
        self.server_kind = trace.SpanKind.SERVER
        self.client_kind = trace.SpanKind.CLIENT


def configure(endpoint: str | None, ratio: float = 1.0, service: str = "tensorgate") -> bool:
    """Trace this process to ``endpoint`` (``host:port`` or ``http(s)://host:port``); None: off."""
    global _active
    if not endpoint:
        return False
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"sampling ratio {ratio} is not within 0..1")
    try:
        _active = _Tracing(endpoint, ratio, service)
    except ImportError as error:
        raise RuntimeError(f"tracing needs OpenTelemetry ({error.name} is missing): pip install tensorgate") from None
    return True


def enabled() -> bool:
    return _active is not None


def shutdown() -> None:
    """Send what is buffered and stop (at process exit)."""
    global _active
    if _active is not None:
        _active.provider.shutdown()
        _active = None


def recording() -> bool:
    """Inside a sampled request (its spans are recorded)."""
    return _active is not None and _SAMPLED.get()


def event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span (cheaper than a span: e.g. each attempt of an upstream call)."""
    if _active is not None and _SAMPLED.get():
        _active.trace.get_current_span().add_event(name, attributes)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A child span of the current one, as a context manager (a null context when tracing is off)."""
    if _active is None or not _SAMPLED.get():
        return _NULL
    return _active.tracer.start_as_current_span(name, attributes=attributes)


@contextlib.contextmanager
def _server(name: str, carrier: Mapping[str, str], attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    assert _active is not None
    parent = _active.propagator.extract(carrier)
    sampled, forward = _SAMPLED.set(True), _FORWARD.set(None)
    try:
        with _active.tracer.start_as_current_span(
            name, context=parent, kind=_active.server_kind, attributes=attributes
        ) as current:
            yield current
    finally:
        _SAMPLED.reset(sampled)
        _FORWARD.reset(forward)


class _Unsampled:
    """An unsampled request: nothing recorded; the traceparent to send on is set for its duration."""

    __slots__ = ("_token", "_value")

    def __init__(self, value: str | None) -> None:
        self._value = value or _unsampled_parent()

    def __enter__(self) -> None:
        self._token = (_SAMPLED.set(False), _FORWARD.set(self._value))

    def __exit__(self, *exc: object) -> None:
        _SAMPLED.reset(self._token[0])
        _FORWARD.reset(self._token[1])


def _unsampled_parent() -> str:
    return f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-00"


def _sampled_flag(traceparent: str) -> bool | None:
    """The sampled bit of a W3C traceparent; None when it is not a valid one."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        return bool(int(parts[3], 16) & 1)
    except ValueError:
        return None


def server_span(name: str, carrier: Mapping[str, str], attributes: Mapping[str, Any] | None = None) -> Any:
    """A request's span, child of the caller's ``traceparent`` in ``carrier`` (headers or metadata).
    The caller's sampled flag decides; without a valid one, ``ratio`` does. Yields None when unsampled."""
    if _active is None:
        return _NULL
    parent = carrier.get("traceparent")
    decided = _sampled_flag(parent) if parent else None
    if decided is None:
        if random.random() >= _active.ratio:
            return _Unsampled(None)
    elif not decided:
        return _Unsampled(parent)
    return _server(name, carrier, attributes)


def outgoing(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``metadata`` plus the ``traceparent`` to send on (unchanged when off or outside a request)."""
    if _active is None:
        return metadata
    if not _SAMPLED.get():  # outside a request too (status polls): tell the next process not to sample
        forward = _FORWARD.get() or _unsampled_parent()
        return (*metadata, ("traceparent", forward))
    carrier: dict[str, str] = {}
    _active.propagator.inject(carrier)
    return metadata + tuple(carrier.items()) if carrier else metadata


def capture() -> Any:
    """The current trace context, to continue it elsewhere (a merged batch); None when off or unsampled."""
    if _active is None or not _SAMPLED.get():
        return None
    return _active.context.get_current()


def span_from(name: str, parents: Iterable[Any], attributes: Mapping[str, Any] | None = None) -> Any:
    """A span whose parent is the first sampled captured context, linked to the other sampled ones (work
    done once for several requests: a coalesced upstream call, a model server batch)."""
    if _active is None:
        return _NULL
    trace = _active.trace
    sampled = [parent for parent in parents if parent is not None]
    if not sampled:
        return _Unsampled(None)
    links = [trace.Link(trace.get_current_span(parent).get_span_context()) for parent in sampled[1:]]
    return _active.tracer.start_as_current_span(name, context=sampled[0], links=links, attributes=attributes)


class Interval:
    """A span opened now and closed later, maybe in another task (time in a queue)."""

    __slots__ = ("_span",)

    def __init__(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        recording = _active is not None and _SAMPLED.get()
        self._span = _active.tracer.start_span(name, attributes=attributes) if recording and _active else None

    def end(self) -> None:
        if self._span is not None:
            self._span.end()
            self._span = None


def trace_id() -> str | None:
    """The current span's trace id (32 hex digits) when it is sampled, else None."""
    if _active is None or not _SAMPLED.get():
        return None
    context = _active.trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid and context.trace_flags.sampled else None


def server_timing(started: float, trace: str | None = None) -> bytes:
    """The ``Server-Timing`` value of an answer: total time since ``started`` (perf_counter), and the
    trace id (as a description) when the request was traced."""
    value = b"total;dur=%.3f" % ((time.perf_counter() - started) * 1000)
    if trace:
        value += b', trace;desc="%s"' % trace.encode("ascii")
    return value


_SPAN_HEADERS = {
    b"x-servable": "tensorgate.servable",
    b"x-model-version": "tensorgate.version",
    b"x-request-id": "tensorgate.request_id",
}


class HttpSpans:
    """ASGI wrapper (installed only with tracing on): each HTTP request in a server span, child of its
    ``traceparent`` header, with the answer's status, servable, version and request id."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _active is None:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
        with server_span(f"{scope['method']} {scope['path']}", carrier, attributes) as current:
            if current is None:  # not sampled
                await self.app(scope, receive, send)
                return

            async def send_traced(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    current.set_attribute("http.response.status_code", status)
                    for name, value in message.get("headers", ()):
                        key = _SPAN_HEADERS.get(name)
                        if key is not None:
                            current.set_attribute(key, value.decode("latin-1"))
                    if status >= 500 and _active is not None:
                        current.set_status(_active.trace.Status(_active.trace.StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_traced)


def annotate(current: Any, call: Any, status: str) -> None:
    """What answered a request (gRPC fronts): status code name, servable, version, request id."""
    current.set_attribute("rpc.grpc.status_code", status)
    current.set_attribute("tensorgate.request_id", call.request_id)
    if call.servable:
        current.set_attribute("tensorgate.servable", call.servable)
        current.set_attribute("tensorgate.version", call.version)
