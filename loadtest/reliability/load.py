"""Locust in the background with an events file, and the events read back: every request, one by one.

A reliability check starts load, does something to the system (a kill, a new model version), stops
the load, then judges every request by when it ran and what it answered::

    reference = reference_classes(modelserver)            # from the model itself, before the load
    with BackgroundLoad(ctx, gateway, "faults") as load:  # RestUser and GrpcUser, against the gateway
        load.wait_for_events(20)                          # traffic flows on both paths
        ... kill something, note time.time() ...
    events = load.events()                                # sorted by end time
    wrong = wrong_answers(events, {"1": reference})       # 200s whose classes differ from the model's

Each ``Event`` is one line of the locustfile's ``--events-file``: end time ``t`` (wall clock),
latency ``ms``, ``ok``, ``error``, ``payload`` (index into the shared payload pool), ``status``
(HTTP code, or the gRPC code name on a failure), ``classes`` (predicted class ids on success) and
``version`` (the model version that answered). Payload ``i`` of every user class carries the same
image (``payloads.build(kind, servable, 1)``), so one reference per version serves REST and gRPC.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from loadtest import payloads, procs
from loadtest.reliability.common import API_KEY, SERVABLE, Context, Server

LOCUSTFILE = procs.ROOT / "loadtest" / "locustfile.py"
POOL_SIZE = 64  # payloads.build's default count: the pool the locustfile's users cycle through


@dataclass(frozen=True)
class Event:
    t: float  # wall clock when the request ended
    name: str
    ms: float
    ok: bool
    payload: int = -1
    status: str = ""  # "200", "503", "UNAVAILABLE", ... ("" for a gRPC success)
    classes: tuple[int, ...] = ()
    version: str = ""
    error: str = ""

    @property
    def start(self) -> float:
        return self.t - self.ms / 1000

    @property
    def protocol(self) -> str:
        return "grpc" if self.name.startswith("grpc") else "rest"


def read_events(path: Path) -> list[Event]:
    """The events written so far, sorted by end time (a line still being written is skipped)."""
    try:
        return sorted(parse_lines(path.read_bytes().splitlines()), key=lambda event: event.t)
    except OSError:
        return []


def parse_lines(lines: list[bytes]) -> list[Event]:
    events = []
    for line in lines:
        try:
            row: dict[str, Any] = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        events.append(
            Event(
                t=float(row["t"]),
                name=str(row.get("name", "")),
                ms=float(row.get("ms", 0.0)),
                ok=bool(row.get("ok")),
                payload=int(row.get("payload", -1)),
                status=str(row.get("status", "")),
                classes=tuple(int(c) for c in row.get("classes") or ()),
                version=str(row.get("version", "")),
                error=str(row.get("error", "")),
            )
        )
    return events


@dataclass
class BackgroundLoad:
    """Locust, headless, against ``server`` (REST at ``server.rest``, gRPC at ``server.grpc``).

    ``users`` per user class (so the default drives 2 REST and 2 gRPC users); ``target_rps`` paces them
    to that many requests per second in all (0: closed loop, each user sends as soon as it has an
    answer, which makes a fast-failing outage a busy loop on a small machine). Locust runs until
    ``stop()`` (or the ``with`` block's end), at most ``run_time`` s. Its log is in the context's logs.
    """

    ctx: Context
    server: Server
    name: str = "load"
    users: int = 2
    user_classes: Sequence[str] = ("RestUser", "GrpcUser")
    run_time: float = 600.0
    target_rps: float = 0.0
    api_key: str = API_KEY
    servable: str = SERVABLE
    extra_args: Sequence[str] = ()
    path: Path = field(init=False)
    locust: procs.Managed | None = field(default=None, init=False)
    _read: list[Event] = field(default_factory=list, init=False)  # complete lines parsed so far
    _offset: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.path = self.ctx.log_path(f"{self.name}-events").with_suffix(".jsonl")
        self.path.unlink(missing_ok=True)

    def start(self) -> BackgroundLoad:
        count = self.users * len(self.user_classes)
        args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        args += ["-u", str(count), "-r", str(count), "-t", f"{self.run_time:g}s", "--host", self.server.rest]
        args += ["--grpc-host", self.server.grpc, "--servable", self.servable, "--events-file", str(self.path)]
        args += ["--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
        args += ["--api-key", self.api_key] if self.api_key else []
        args += ["--target-rps", f"{self.target_rps:g}"] if self.target_rps else []
        args += [*self.extra_args, *self.user_classes]
        self.locust = procs.Managed(f"locust-{self.name}", args, self.ctx.log_path(f"locust-{self.name}"))
        return self

    def stop(self) -> None:
        """SIGTERM: Locust stops its users and exits; every finished request is already on disk."""
        if self.locust is not None:
            self.locust.stop(grace=10.0)

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def events(self, since: float = 0.0) -> list[Event]:
        """Events that ended at or after ``since`` (wall clock), sorted by end time. Reads only what was
        appended since the last call (polling stays cheap over a long run)."""
        try:
            with self.path.open("rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except OSError:
            chunk = b""
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
        if complete:
            self._offset += len(complete)
            self._read = sorted([*self._read, *parse_lines(complete.splitlines())], key=lambda event: event.t)
        return [event for event in self._read if event.t >= since]

    def wait_for_events(self, count: int, since: float = 0.0, timeout: float = 60.0) -> list[Event]:
        """Block until ``count`` events ended after ``since`` from every user class's protocol
        (Locust imports and encodes payloads first: seconds on a busy machine)."""
        wanted = self.protocols
        return self.wait_until(
            lambda events: all(sum(e.protocol == p for e in events) >= count for p in wanted), since, timeout
        )

    def wait_until(self, done: Callable[[list[Event]], bool], since: float = 0.0, timeout: float = 60.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(since)
            if done(events):
                return events
            if self.locust is not None and not self.locust.alive():
                raise RuntimeError(f"Locust exited early:\n{procs.tail(self.locust.log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"load: condition not met after {timeout:.0f} s ({len(events)} events)")
            time.sleep(0.2)

    @property
    def protocols(self) -> set[str]:
        return {"grpc" if name == "GrpcUser" else "rest" for name in self.user_classes}


def reference_classes(modelserver: Server, version: int | None = None, servable: str = SERVABLE) -> list[int]:
    """The class the model itself predicts for each image of the payload pool (one request each,
    straight to the model server's REST API): what every 200 through the gateway must answer."""
    path = f"/v1/models/{servable}" + (f"/versions/{version}" if version is not None else "") + ":predict"
    pool = payloads.build("instances", servable, 1, POOL_SIZE)
    classes = []
    with httpx.Client(base_url=modelserver.rest, timeout=30) as client:
        for payload in pool:
            response = client.post(path, content=payload.body, headers={"Content-Type": payload.content_type})
            if response.status_code != 200:
                raise RuntimeError(f"reference answer: HTTP {response.status_code}: {response.text[:200]}")
            classes += payloads.rest_class_ids(response.content, 1)
    return classes


def wrong_answers(events: list[Event], references: dict[str, list[int]]) -> list[Event]:
    """Successful events whose answer is empty, names no known version, or differs from the model's
    own answer for that payload and version (``references``: version -> classes per payload)."""
    wrong = []
    for event in events:
        if not event.ok:
            continue
        reference = references.get(event.version)
        if (
            reference is None
            or not event.classes
            or not 0 <= event.payload < len(reference)
            or list(event.classes) != [reference[event.payload]]
        ):
            wrong.append(event)
    return wrong


def describe(event: Event) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(event.t))
    return (
        f"{event.name} at {when}: ok={event.ok} status={event.status or '-'} version={event.version or '-'} "
        f"payload={event.payload} classes={list(event.classes)} {event.ms:.0f} ms {event.error[:120]}"
    )


def status_counts(events: list[Event]) -> dict[str, int]:
    """Requests per outcome: ``ok`` or the HTTP status / gRPC code of the failure."""
    counts: dict[str, int] = {}
    for event in events:
        key = "ok" if event.ok else (event.status or event.error.split(":")[0] or "?")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


__all__ = [
    "BackgroundLoad",
    "Event",
    "describe",
    "parse_lines",
    "read_events",
    "reference_classes",
    "status_counts",
    "wrong_answers",
]
