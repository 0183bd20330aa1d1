"""Timeouts uvicorn lacks for slow clients (slowloris), shared by the gateway and the model server.

uvicorn times out idle keep-alive connections only: a client that opens a connection and sends its
request line and headers a byte at a time holds it forever, and so does one that sends its body a byte
at a time (the ASGI app waits in ``receive()``). Two pieces close both holes:

- ``timed_http_protocol(seconds, parser)``: uvicorn's httptools (or h11) protocol with a timer from the
  connection (or the end of the previous response) to the end of the request's headers; when it fires,
  the client gets 408 ``{"error": ...}`` and the connection is closed.
  Requests that are not HTTP at all (uvicorn's plain-text 400) get a JSON ``{"error"}`` body too.
- ``receive_with_deadline(receive, deadline)``: an ASGI ``receive`` that raises ``RequestTimeout``
  (408) when the body has not arrived by ``deadline`` (``time.monotonic()``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import uvicorn.protocols.http.h11_impl

from serving.errors import RequestTimeout
from serving.tfserving.encode import error_body


def _closing_response(status_line: bytes, message: str) -> bytes:
    body = error_body(message)
    head = (
        status_line + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    )
    return head + body


class _HeaderTimer(asyncio.Protocol):
    """The header timer, for either of uvicorn's HTTP protocols (it goes before them in the bases).

    Both parse in ``data_received`` and start a new ``cycle`` when a request's headers are complete,
    so a ``cycle`` that changed during ``data_received`` is what stops the timer.
    """

    header_timeout_s = 10.0
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._bytes_seen = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._bytes_seen = True
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._bytes_seen = False
            self._arm_header_timer()  # the next request on this connection gets the same allowance

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_timer()
        self.transport.write(_closing_response(b"HTTP/1.1 400 Bad Request", msg))
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being answered: its own deadlines apply
        if self._bytes_seen:
            message = f"Request headers not received within {self.header_timeout_s:g} seconds"
            self.transport.write(_closing_response(b"HTTP/1.1 408 Request Timeout", message))
        self.transport.close()


HttpParser = Literal["httptools", "h11"]


def timed_http_protocol(header_timeout_s: float, parser: HttpParser = "httptools") -> type[asyncio.Protocol]:
    """uvicorn's ``parser`` protocol with a ``header_timeout_s`` limit on receiving request headers."""
    base: type[asyncio.Protocol]
    if parser == "h11":
        base = uvicorn.protocols.http.h11_impl.H11Protocol
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # needs httptools

        base = HttpToolsProtocol
    name = f"Timed{base.__name__}"
    return type(name, (_HeaderTimer, base), {"header_timeout_s": header_timeout_s})


def receive_with_deadline(receive: Any, deadline: float, seconds: float) -> Any:
    """``receive`` for a request whose body must have arrived by ``deadline`` (``time.monotonic()``).

    Once the last body chunk is in, calls pass through untimed (a later ``receive`` waits for the
    disconnect, which is not the client's delay).
    """
    complete = False

    async def timed_receive() -> Any:
        nonlocal complete
        if complete:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise RequestTimeout(f"Request body not received within {seconds:g} seconds") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return timed_receive
