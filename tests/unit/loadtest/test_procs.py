"""loadtest.procs.free_port: the one port picker the tests, benchmarks and scripts share."""

from __future__ import annotations

import socket
from typing import ClassVar

import pytest

from loadtest import procs


class _ReusingKernel:
    """A socket whose bind(0) hands out ports from a fixed list, as Linux may when it gives the port of a
    socket just closed to the next bind."""

    ports: ClassVar[list[int]] = []

    def __init__(self, *args: object) -> None:
        self.port = 0

    def __enter__(self) -> _ReusingKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self.port = self.ports.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_two_calls_never_return_the_same_port_even_when_the_kernel_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CI failure this guards against: a server's gRPC and REST ports came out equal, the model
    # server skipped REST (as TF Serving does) and the module's 49 tests timed out waiting for it.
    monkeypatch.setattr(procs, "_HANDED_OUT", set())
    monkeypatch.setattr(_ReusingKernel, "ports", [40001, 40001, 40001, 40002])
    monkeypatch.setattr(procs.socket, "socket", _ReusingKernel)
    assert procs.free_port() == 40001
    assert procs.free_port() == 40002


def test_ports_are_free_on_loopback_and_distinct() -> None:
    ports = [procs.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it
