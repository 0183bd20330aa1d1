"""``server.workers: N``: N gateway processes serving the same HTTP and gRPC ports.

Each worker is a whole gateway (its own event loop, upstream channels, coalescer and metrics) whose
listening sockets set SO_REUSEPORT, so the kernel spreads new connections over the workers. The first
process only supervises: it starts the workers, restarts one that dies, and on SIGTERM/SIGINT passes
the signal on and waits for every worker to drain. ``/metrics`` answers for the worker that took the
connection (each keeps its own counters).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger("tensorgate.gateway")

WORKER_ENV = "TENSORGATE_GATEWAY_WORKER"  # set in a worker's environment: its index
_RESTART_PAUSE_S = 1.0


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def supervise(workers: int, argv: list[str]) -> int:
    """Run ``workers`` copies of ``python -m serving.gateway <argv>`` until SIGTERM/SIGINT; 0 when all
    of them then exit 0."""
    command = [sys.executable, "-m", "serving.gateway", *argv]
    children = [_start(command, index) for index in range(workers)]
    stopping: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("gateway supervising %d workers (pids %s)", workers, [c.pid for c in children])
        while not stopping:
            for index, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    log.error("gateway worker %d exited with %s; starting it again", index, child.returncode)
                    time.sleep(_RESTART_PAUSE_S)
                    children[index] = _start(command, index)
            time.sleep(0.2)
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(code == 0 for code in codes) else 1


def _start(command: list[str], index: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env={**os.environ, WORKER_ENV: str(index)})
