"""HTTP/1.1 on a plain socket, for requests a well-behaved client library refuses to send: lying or
absent Content-Length, unnormalised paths (``..``, raw UTF-8), bodies sent a byte at a time."""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass
class Reply:
    status: int  # 0: no answer (closed, reset or timed out; see ``error``)
    body: bytes
    headers: dict[str, str]
    seconds: float
    error: str = ""

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def error_text(self) -> str | None:
        """The ``error`` string of a TF Serving-style ``{"error": "..."}`` body, else None."""
        document = self.json()
        if isinstance(document, dict) and isinstance(document.get("error"), str) and document["error"]:
            return str(document["error"])
        return None


def address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    return parts.hostname or "127.0.0.1", parts.port or 80


def head(method: str, path: str | bytes, headers: dict[str, str], length: int | None, chunked: bool) -> bytes:
    target = path if isinstance(path, bytes) else path.encode("latin-1")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(b"Content-Length: " + str(length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunk_body(body: bytes, size: int = 65536) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


class _Bytes:
    """A socket stand-in that ``http.client.HTTPResponse`` reads a response already received from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def parse(data: bytes) -> Reply:
    """A response received whole (chunked or not)."""
    return read_reply(_Bytes(data), time.monotonic())  # type: ignore[arg-type]


def read_reply(sock: socket.socket, started: float) -> Reply:
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        return Reply(0, b"", {}, time.monotonic() - started, f"{type(error).__name__}: {error}")
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, body, headers, time.monotonic() - started)


def request(
    base: str,
    method: str,
    path: str | bytes,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    length: int | str | None = "auto",
    chunked: bool = False,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection. ``length``: "auto" (the body's), an int (a lie, if it differs),
    or None (no Content-Length header)."""
    started = time.monotonic()
    declared = len(body) if length == "auto" else length
    assert declared is None or isinstance(declared, int)
    data = head(method, path, headers or {}, declared, chunked) + (chunk_body(body) if chunked else body)
    with socket.create_connection(address(base), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server answered (413) and stopped reading the body
            sock.sendall(data)
        return read_reply(sock, started)
