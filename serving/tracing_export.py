"""The OTLP/gRPC export side of serving.tracing: finished spans arrive as plain tuples, wait in a queue
and leave in batches from one background thread, which hands each batch (``marshal``-ed, about 1 us a
span) through a pipe to a child process, serving.tracing_agent. That process alone builds the OTLP
protobufs (``opentelemetry-proto``, the published messages any OpenTelemetry collector accepts) and
makes the gRPC call, so encoding and sending (about 24 us a span in-process) never hold this
process's GIL.

Recording a span is one ``list.append`` on the serving thread; nothing of protobuf or gRPC runs there.
Batches leave every ``OTEL_BSP_SCHEDULE_DELAY`` ms (5000 by default, as OpenTelemetry's SDK) or as soon
as ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans (512) wait; past ``OTEL_BSP_MAX_QUEUE_SIZE`` (2048)
waiting spans, new ones are dropped and counted (a collector that is slow to answer fills the pipe,
which then holds the queue back). A failed export is logged and its spans dropped.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("serving.tracing")

# (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, attributes, events, links, error)
# ids are ints (0: no parent); times are time.monotonic_ns(); events: [(name, time, attributes)];
# links: [(trace_id, span_id)];
# error: None, or the status message of a failed span
Record = tuple[int, int, int, str, int, int, int, Any, Any, Any, Any]
_AGENT_START_S = 60.0


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


class Exporter:
    def __init__(self, endpoint: str, service: str) -> None:
        # fail early, with the name of what is missing, if OpenTelemetry's messages are not installed
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc  # noqa: F401

        self.secure = endpoint.startswith("https://")
        self.target = endpoint.split("://", 1)[1] if "://" in endpoint else endpoint
        self.service = service
        self.delay_s = _env_int("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self.batch = _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        self.limit = max(self.batch, _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self.timeout_s = _env_int("OTEL_EXPORTER_OTLP_TIMEOUT", 10000) / 1000
        self.dropped = 0
        self.handed = 0  # spans handed to the exporter process so far
        self._start()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:  # a forked worker gets a thread and an exporter process of its own
        if not self._stopping:
            if self._agent is not None and self._agent.stdin is not None:
                with contextlib.suppress(OSError):  # the parent's pipe: its agent must see EOF when it ends
                    self._agent.stdin.close()
            self._start()

    def _start(self) -> None:
        self.pending: deque[Record] = deque()  # append and popleft are atomic: no lock
        self._wake = threading.Event()
        self._stopping = False
        self._agent: subprocess.Popen[bytes] | None = self._start_agent()
        self._thread = threading.Thread(target=self._run, name="tensorgate-otlp-export", daemon=True)
        self._thread.start()

    def _start_agent(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "serving.tracing_agent", self.target, "1" if self.secure else "0"]
        agent = subprocess.Popen(
            [*command, self.service, str(self.timeout_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a signal to the serving process group does not cut the last export
        )
        assert agent.stdout is not None
        ready, _, _ = select.select([agent.stdout], [], [], _AGENT_START_S)
        if not ready or agent.stdout.read(1) != b"\n":
            agent.kill()
            raise RuntimeError(
                f"the trace exporter process did not start (exit code {agent.wait()}); see its log above"
            )
        agent.stdout.close()
        return agent

    def add(self, record: Record) -> None:
        pending = self.pending
        if len(pending) >= self.limit:
            self.dropped += 1
            return
        pending.append(record)
        if len(pending) == self.batch:
            self._wake.set()

    def shutdown(self) -> None:
        """Send what waits, then stop the thread and the exporter process."""
        self._stopping = True
        self._wake.set()
        self._thread.join(self.timeout_s + 1)
        agent = self._agent
        if agent is None:
            return
        try:
            if self._thread.is_alive():  # still writing to a full pipe (the collector is slow): give up
                raise subprocess.TimeoutExpired("serving.tracing_agent", self.timeout_s + 1)
            assert agent.stdin is not None
            agent.stdin.close()  # the agent sends what it has read, then ends
            agent.wait(self.timeout_s + 1)
        except (OSError, subprocess.TimeoutExpired):
            agent.kill()
            agent.wait()

    def _run(self) -> None:
        while not self._stopping:
            full = self._wake.wait(self.delay_s)  # True: woken by a full batch; False: the delay passed
            self._wake.clear()
            self._flush(everything=not full)
        self._flush(everything=True)

    def _flush(self, everything: bool) -> None:
        """Hands over full batches; also the last, partial one when ``everything`` (the delay passed, or
        shutdown). A partial batch left behind joins the next one: sending it at once would double the
        exports (and their fixed cost in this thread, the exporter process and the collector), since
        more spans arrive while this thread waits for the GIL after a wake."""
        pending, size = self.pending, self.batch
        while len(pending) >= size or (everything and pending):
            records = [pending.popleft() for _ in range(min(size, len(pending)))]
            self._hand_over(records)
        if self.dropped:
            log.warning("%d spans dropped: more than %d waited for export", self.dropped, self.limit)
            self.dropped = 0

    def _hand_over(self, records: list[Record]) -> None:
        try:
            data = marshal.dumps(records)
        except ValueError:  # an attribute of a type marshal does not know: send its text, as the OTLP encoding would
            data = marshal.dumps([_plain(record) for record in records])
        try:
            agent = self._agent
            if agent is None or agent.poll() is not None:
                if not self._stopping:
                    log.warning("the trace exporter process ended; starting a new one")
                    self._agent = agent = self._start_agent()
                else:
                    raise OSError("the trace exporter process has ended")
            assert agent.stdin is not None
            agent.stdin.write(len(data).to_bytes(4, "little") + data)
            agent.stdin.flush()
            self.handed += len(records)
        except (OSError, RuntimeError) as error:
            log.warning("trace export to %s failed (%d spans dropped): %s", self.target, len(records), error)


def _plain(record: Record) -> Record:
    def values(attributes: Any) -> Any:
        if not attributes:
            return attributes
        return {
            key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in attributes.items()
        }

    events = [(name, at, values(attributes)) for name, at, attributes in record[8] or ()]
    return (*record[:7], values(record[7]), events, record[9], record[10])  # type: ignore[return-value]


def clock_offset_ns() -> int:
    """What turns a span's time.monotonic_ns() into Unix time."""
    return time.time_ns() - time.monotonic_ns()
