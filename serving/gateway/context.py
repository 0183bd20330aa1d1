"""What one request carries through the gateway: its id, deadline, sticky key, and what answered it."""

from __future__ import annotations

import random
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

REQUEST_ID_HEADER = "x-request-id"
_random_bits = random.Random().getrandbits  # seeded from the OS once per process
_MAX_ID_LENGTH = 128


def new_request_id(given: str | None = None) -> str:
    """The caller's id when it is printable and short, otherwise a fresh one: 128 random bits as 32 hex
    digits, like a uuid4's hex, from the process's generator (an id correlates logs, it guards nothing;
    uuid4 costs a getrandom system call per request)."""
    if given and len(given) <= _MAX_ID_LENGTH and given.isascii() and given.isprintable():
        return given
    return f"{_random_bits(128):032x}"


@dataclass(slots=True)
class CallContext:
    request_id: str
    deadline: float  # time.monotonic() by which the answer is due
    request_key: str | None = None
    method: str = "other"  # metric label: predict, metadata, status, classify, ...
    servable: str = ""
    version: str = ""
    degraded: bool = False
    started: float = field(default_factory=time.perf_counter)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def answered_by(self, servable: str, version: str) -> None:
        self.servable = servable
        self.version = version


CURRENT: ContextVar[CallContext | None] = ContextVar("tensorgate_call", default=None)
