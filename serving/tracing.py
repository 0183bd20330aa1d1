"""OpenTelemetry tracing for the gateway and the model server: off unless configured.

``configure(endpoint, ratio, service)`` sets the process's tracing up: spans go to an OTLP/gRPC
collector at ``endpoint``; a request with no sampled parent is traced with probability ``ratio``
(a parent's decision is always followed, so a trace is never cut in half between the processes).
The W3C ``traceparent`` (and ``tracestate``) travel in HTTP headers and gRPC metadata. Until
``configure`` runs nothing of OpenTelemetry is imported, and every hook below is a call that returns a
shared null context.

Spans are recorded here, on the serving thread, as small slotted objects that become plain tuples when
they end; serving.tracing_export queues them and hands them in batches to a child process
(serving.tracing_agent) that turns them into OTLP protobufs and sends them. (OpenTelemetry's Python
SDK built several objects per span and encoded each one under the GIL: at 10% sampling it cost the
gateway 10-17% of its peak, bench/tracing/report.md.)
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Awaitable, Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from serving.tracing_export import Exporter

_NULL = contextlib.nullcontext()
_INTERNAL, _SERVER = 1, 2  # OTLP span kinds
_active: _Tracing | None = None
# Within a sampled request: its current span. Within an unsampled one: the caller's traceparent (flags
# 00, so the next process does not sample it either) and tracestate, as the metadata to send on, or None
# (a new traceparent, also 00, for each call it makes). Unsampled requests record nothing: at 10%
# sampling nine requests in ten cost a random draw and, at most, a context variable set.
_STATE: ContextVar[_Span | tuple[tuple[str, str], ...] | None] = ContextVar("tensorgate_trace", default=None)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# span times are CLOCK_MONOTONIC nanoseconds (a wall-clock step cannot make a span negative); the exporter
# process turns them into Unix time (the clock is the machine's, shared by its processes)
_getrandbits, _time_ns = random.getrandbits, time.monotonic_ns


class _Tracing:
    def __init__(self, endpoint: str, ratio: float, service: str) -> None:
        self.exporter = Exporter(endpoint, service)
        self.add = self.exporter.add
        self.ratio = ratio


class _Span:
    """A span being recorded, and the context manager that makes it the current one: it ends with the
    block (failed if the block raised). ``attributes`` is kept (and changed by set_attribute), not
    copied."""

    __slots__ = (
        "_token",
        "attributes",
        "error",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "span_id",
        "start",
        "trace_id",
        "tracestate",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        parent_id: int,
        kind: int = _INTERNAL,
        attributes: Any = None,
        links: list[tuple[int, int]] | None = None,
        tracestate: str | None = None,
    ) -> None:
        self.trace_id, self.span_id, self.parent_id = trace_id, _getrandbits(64) or 1, parent_id
        self.name, self.kind, self.attributes, self.links = name, kind, attributes, links
        self.events: list[tuple[str, int, Mapping[str, Any]]] | None = None
        self.error: str | None = None
        self.tracestate = tracestate
        self.start = _time_ns()

    def __enter__(self) -> _Span:
        self._token = _STATE.set(self)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        _STATE.reset(self._token)
        if error is not None:
            self.error = f"{kind.__name__}: {error}"
        self.end()

    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Mapping[str, Any]) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, _time_ns(), attributes))

    def set_error(self, message: str = "") -> None:
        self.error = message

    def child(self, name: str, attributes: Any) -> _Span:
        return _Span(name, self.trace_id, self.span_id, _INTERNAL, attributes, None, self.tracestate)

    def end(self) -> None:
        active = _active
        if active is not None:
            active.add(
                (
                    self.trace_id,
                    self.span_id,
                    self.parent_id,
                    self.name,
                    self.kind,
                    self.start,
                    _time_ns(),
                    self.attributes,
                    self.events,
                    self.links,
                    self.error,
                )
            )


class _Unsampled:
    """Nothing recorded within the block; the caller's ``traceparent`` (None: a new one per call) and
    ``tracestate`` are sent on (W3C: a tracestate travels with its traceparent)."""

    __slots__ = ("_forward", "_token")

    def __init__(self, traceparent: str | None, tracestate: str | None = None) -> None:
        forward = None
        if traceparent is not None:
            forward = (
                (("traceparent", traceparent), ("tracestate", tracestate))
                if tracestate
                else (("traceparent", traceparent),)
            )
        self._forward = forward

    def __enter__(self) -> None:
        self._token: Token[Any] = _STATE.set(self._forward)

    def __exit__(self, *exc: object) -> None:
        _STATE.reset(self._token)


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
        exporter, _active = _active.exporter, None
        exporter.shutdown()


def recording() -> bool:
    """Inside a sampled request (its spans are recorded)."""
    return _active is not None and isinstance(_STATE.get(), _Span)


def event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span (cheaper than a span: e.g. each attempt of an upstream call)."""
    current = _STATE.get()
    if _active is not None and isinstance(current, _Span):
        current.add_event(name, attributes)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A child span of the current one, as a context manager (a null context when tracing is off)."""
    current = _STATE.get()
    if _active is None or not isinstance(current, _Span):
        return _NULL
    return current.child(name, attributes)


def _decide(traceparent: str | None) -> tuple[int, int] | str | None:
    """For a request with this ``traceparent``: (trace id, parent span id) when it is recorded (a new
    trace: parent 0), the traceparent to send on when the caller said not to sample, None when the
    ratio said no. The caller's valid flag decides; without a valid one, the ratio does."""
    assert _active is not None
    if traceparent:
        parsed = _TRACEPARENT.fullmatch(traceparent.strip())
        if parsed is not None and parsed[1] != "ff" and (parsed[1] != "00" or parsed[5] is None):
            trace_id, parent_id = int(parsed[2], 16), int(parsed[3], 16)
            if trace_id and parent_id:
                return (trace_id, parent_id) if int(parsed[4], 16) & 1 else traceparent
    if random.random() >= _active.ratio:
        return None
    return (_getrandbits(128) or 1, 0)


def _server(name: str, decided: tuple[int, int], tracestate: str | None, attributes: Any) -> _Span:
    return _Span(name, decided[0], decided[1], _SERVER, attributes, None, tracestate)


def _unsampled(decided: str | None, tracestate: str | None = None) -> Any:
    """The context of an unsampled request: nothing to set when no caller's traceparent is to be sent on
    and none is set (a request's task starts with none)."""
    return _NULL if decided is None and _STATE.get() is None else _Unsampled(decided, tracestate)


def server_span(name: str, carrier: Mapping[str, str], attributes: Mapping[str, Any] | None = None) -> Any:
    """A request's span, child of the caller's ``traceparent`` in ``carrier`` (headers or metadata).
    Yields None when unsampled."""
    if _active is None:
        return _NULL
    decided = _decide(carrier.get("traceparent"))
    if not isinstance(decided, tuple):
        return _unsampled(decided, carrier.get("tracestate") if decided else None)
    return _server(name, decided, carrier.get("tracestate"), dict(attributes) if attributes else None)


def _unsampled_parent() -> str:
    return f"00-{_getrandbits(128) or 1:032x}-{_getrandbits(64) or 1:016x}-00"


def outgoing(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``metadata`` plus the ``traceparent`` to send on (unchanged when off)."""
    if _active is None:
        return metadata
    current = _STATE.get()
    if current is None:  # unsampled, or outside a request (status polls): the next process must not sample
        return (*metadata, ("traceparent", _unsampled_parent()))
    if isinstance(current, tuple):  # an unsampled caller's traceparent and tracestate
        return (*metadata, *current)
    sent = (*metadata, ("traceparent", f"00-{current.trace_id:032x}-{current.span_id:016x}-01"))
    return (*sent, ("tracestate", current.tracestate)) if current.tracestate else sent


def capture() -> Any:
    """The current span, to continue its trace elsewhere (a merged batch); None when off or unsampled."""
    current = _STATE.get()
    return current if _active is not None and isinstance(current, _Span) else None


def span_from(name: str, parents: Iterable[Any], attributes: Mapping[str, Any] | None = None) -> Any:
    """A span whose parent is the first sampled captured span, linked to the other sampled ones (work
    done once for several requests: a coalesced upstream call, a model server batch)."""
    if _active is None:
        return _NULL
    sampled = [parent for parent in parents if parent is not None]
    if not sampled:
        return _unsampled(None)
    first = sampled[0]
    links = [(parent.trace_id, parent.span_id) for parent in sampled[1:]] or None
    return _Span(name, first.trace_id, first.span_id, _INTERNAL, attributes, links, first.tracestate)


class Interval:
    """A span opened now and closed later, maybe in another task (time in a queue)."""

    __slots__ = ("_span",)

    def __init__(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        current = _STATE.get()
        self._span = current.child(name, attributes) if _active is not None and isinstance(current, _Span) else None

    def end(self) -> None:
        if self._span is not None:
            self._span.end()
            self._span = None


def trace_id() -> str | None:
    """The current span's trace id (32 hex digits) when it is sampled, else None."""
    current = _STATE.get()
    return f"{current.trace_id:032x}" if _active is not None and isinstance(current, _Span) else None


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
    """ASGI wrapper (installed only with tracing on): each sampled HTTP request in a server span, child of
    its ``traceparent`` header, with the answer's status, servable, version and request id.

    ``__call__`` is a plain function that returns the wrapped app's awaitable, so an unsampled request
    passes through with no coroutine of its own (a server given this object directly must be told it
    is an ASGI 3 app: uvicorn's ``interface="asgi3"``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "http" or _active is None:
            return self.app(scope, receive, send)
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value
            elif name == b"tracestate":
                tracestate = value
        decided = _decide(traceparent.decode("latin-1") if traceparent else None)
        if isinstance(decided, tuple):
            return self._traced(decided, tracestate.decode("latin-1") if tracestate else None, scope, receive, send)
        if decided is None and _STATE.get() is None:  # no caller's decision to send on
            return self.app(scope, receive, send)
        return self._unsampled(decided, tracestate.decode("latin-1") if tracestate else None, scope, receive, send)

    async def _unsampled(
        self, decided: str | None, tracestate: str | None, scope: Any, receive: Any, send: Any
    ) -> None:
        with _Unsampled(decided, tracestate):
            await self.app(scope, receive, send)

    async def _traced(
        self, decided: tuple[int, int], tracestate: str | None, scope: Any, receive: Any, send: Any
    ) -> None:
        method, path = scope["method"], scope["path"]
        attributes = {"http.request.method": method, "url.path": path}
        with _server(f"{method} {path}", decided, tracestate, attributes) as current:

            async def send_traced(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    current.set_attribute("http.response.status_code", status)
                    for name, value in message.get("headers", ()):
                        key = _SPAN_HEADERS.get(name)
                        if key is not None:
                            current.set_attribute(key, value.decode("latin-1"))
                    if status >= 500:
                        current.set_error()
                await send(message)

            await self.app(scope, receive, send_traced)


def annotate(current: Any, call: Any, status: str) -> None:
    """What answered a request (gRPC fronts): status code name, servable, version, request id."""
    current.set_attribute("rpc.grpc.status_code", status)
    current.set_attribute("tensorgate.request_id", call.request_id)
    if call.servable:
        current.set_attribute("tensorgate.servable", call.servable)
        current.set_attribute("tensorgate.version", call.version)
