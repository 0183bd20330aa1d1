"""Keep a child process running: when it dies, say why and start it again after a growing pause.

What ``make run`` (``serving.stack``) uses for the model server and the gateway. The child's output is
passed through line by line and its last lines are kept, so the log says how a crash ended (for
example TensorFlow's ``Check failed`` line before an abort), not only that it happened.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

log = logging.getLogger("tensorgate.supervisor")


def exit_reason(returncode: int) -> str:
    """``-6`` -> ``killed by signal SIGABRT (6)``; ``1`` -> ``exited with status 1``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"killed by signal {name} ({-returncode})"
    return f"exited with status {returncode}"


class Supervised:
    """One child process, restarted with exponential backoff (``backoff_s`` doubling up to
    ``max_backoff_s``; back to ``backoff_s`` once a run lasted ``stable_s``). Call ``check()`` often."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        output: IO[str] | None = None,
    ) -> None:
        self.name, self.command, self.env = name, list(command), env
        self.backoff_s, self.max_backoff_s, self.stable_s = backoff_s, max_backoff_s, stable_s
        self.output = output or sys.stdout
        self.process: subprocess.Popen[str] | None = None
        self.restarts = 0
        self.last_lines: collections.deque[str] = collections.deque(maxlen=12)
        self._pause = backoff_s
        self._started_at = 0.0
        self._restart_at: float | None = None
        self._reader: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        self._stopped = False
        self.last_lines.clear()
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._started_at = time.monotonic()
        self._reader = threading.Thread(target=self._pass_through, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _pass_through(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            self.last_lines.append(line.rstrip("\n"))
            self.output.write(line)
            self.output.flush()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> bool:
        """Notice a death and schedule the restart; start it when its time has come. True if running."""
        if self._stopped:
            return False
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self.restarts += 1
                log.warning("restarting the %s (restart %d)", self.name, self.restarts)
                self.start()
            return self.alive
        if self.process is None or self.alive:
            return self.alive
        if self._reader is not None:
            self._reader.join(2.0)  # its last words first
        lived = now - self._started_at
        if lived >= self.stable_s:
            self._pause = self.backoff_s
        last = " | ".join(line for line in self.last_lines if line.strip())[-1500:]
        log.error(
            "the %s (pid %d) %s after %.1f s; restarting it in %.1f s. Its last output: %s",
            self.name,
            self.process.pid,
            exit_reason(self.process.returncode),
            lived,
            self._pause,
            last or "(none)",
        )
        self._restart_at = now + self._pause
        self._pause = min(self._pause * 2, self.max_backoff_s)
        return False

    def stop(self, grace_s: float = 15.0) -> None:
        self._stopped, self._restart_at = True, None
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._reader is not None:
            self._reader.join(2.0)


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=os.environ.get("TENSORGATE_LOG_LEVEL", "INFO"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
