"""Processes the runner starts: each in its own session with a log file, watched with psutil, and
stopped as a whole process group (so a server's worker processes never outlive it)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RUN_ENV = "TENSORGATE_LOADTEST_RUN"  # set in every child's environment: the run that started it
_LIVE: set[Managed] = set()
run_mark = ""


class StartError(Exception):
    """A process exited or never became ready; the message holds the tail of its log."""


_HANDED_OUT: set[int] = set()
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback TCP port nothing is bound to now and that this process has not handed out before.

    Linux may give the port of a socket just closed to the very next ``bind(0)``, so two calls in a row
    (a gRPC and a REST port for one server) can return the same number; the model server then skips its
    REST API, as TF Serving does, and whoever waits for it times out. Remembering every port given out
    keeps all of one process's ports distinct. Another process may still take the port before our
    server binds it; that race is the caller's, as with any pick-then-bind helper.
    """
    with _PORTS_LOCK:
        for _ in range(1000):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise OSError("no loopback port left that this process has not already handed out")


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Managed:
    """A child process group. ``stop()`` sends SIGTERM to the group, then SIGKILL after ``grace`` s."""

    def __init__(
        self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.name, self.args, self.log = name, args, log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as stream:
            self.process = subprocess.Popen(
                args,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", RUN_ENV: run_mark, **(env or {})},
                stdout=stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _LIVE.add(self)
        self.psutil = psutil.Process(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(f"{self.name} exited with status {self.process.returncode}:\n{tail(self.log)}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.25)
        raise StartError(f"{self.name} not ready after {timeout:.0f} s:\n{tail(self.log)}")

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.psutil, *self.psutil.children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self, grace: float = 10.0) -> None:
        _LIVE.discard(self)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        # the leader may be gone while its workers still run: the group is what must end
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def stop_all() -> None:
    for managed in list(_LIVE):
        managed.stop(grace=5.0)


atexit.register(stop_all)  # a last resort: the runner stops its processes itself on every normal path


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(processes: Iterable[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


class Monitor:
    """CPU time and peak RSS of named process trees during one measurement, sampled every ``period`` s.

    ``cpu(since)`` is each tree's CPU time from the first sample at or after ``since`` (the first
    request of the step, so Locust's own start is not counted) to the last sample. Children that exit
    during the measurement take their CPU time with them (psutil cannot see it), which is exact for
    servers whose workers live as long as they do.
    """

    def __init__(self, groups: dict[str, Managed], period: float = 0.2) -> None:
        self.groups, self.period = groups, period
        self.peak_rss: dict[str, int] = dict.fromkeys(groups, 0)
        self.samples: list[tuple[float, dict[str, float], float]] = []  # (time, cpu per group, system busy)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._last: dict[str, float] = dict.fromkeys(groups, 0.0)

    def __enter__(self) -> Monitor:
        self._sample()
        self._thread.start()
        return self

    def _sample(self) -> None:
        for name, group in self.groups.items():
            processes = group.tree()
            if processes:
                self.peak_rss[name] = max(self.peak_rss[name], rss_bytes(processes))
                self._last[name] = max(self._last[name], cpu_seconds(processes))
        times = psutil.cpu_times()
        busy = sum(getattr(times, f) for f in ("user", "system", "nice", "irq", "softirq"))
        self.samples.append((time.time(), dict(self._last), busy))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _start(self, since: float) -> tuple[float, dict[str, float], float]:
        return next((sample for sample in self.samples if sample[0] >= since), self.samples[0])

    def cpu(self, since: float = 0.0) -> dict[str, float]:
        start, end = self._start(since)[1], self.samples[-1][1]
        return {name: end[name] - start[name] for name in self.groups}

    def system_busy(self, since: float = 0.0) -> float:
        return self.samples[-1][2] - self._start(since)[2]

    def seconds(self, since: float = 0.0) -> float:
        return self.samples[-1][0] - self._start(since)[0]


def python() -> str:
    return sys.executable
