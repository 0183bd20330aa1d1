"""Sampling profiles of the servers during a step (py-spy, when installed), summarised as text.

py-spy reads a process's stacks from outside (no code change, little overhead at 100 Hz, every thread),
so the profile is of the same process the step measures. ``--profile`` in the runner records the
gateway and the model server during ``gateway-rest``'s and ``gateway-grpc``'s largest step; the
summary (top functions by own and by inclusive samples) goes into report.md under the goals.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from loadtest.procs import Managed

# frames every stack passes through (event loop, threads, module start): no information inclusive
_PLUMBING = (
    "(<frozen runpy>)",
    "(threading.py)",
    "(selectors.py)",
    "(asyncio/runners.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(uvicorn/server.py)",
    "(uvicorn/_compat.py)",
    "__main__.py)",
)
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def start(name: str, pid: int, seconds: float, output: Path) -> Managed | None:
    binary = py_spy()
    if binary is None:
        return None
    args = [binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "100"]
    args += ["--format", "raw", "--output", str(output), "--nonblocking", "--subprocesses"]
    return Managed(f"py-spy {name}", args, output.with_suffix(".log"))


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['function']} ({path})"


def summarise(raw: Path, top: int = 12) -> str:
    """Top functions by own samples and by inclusive samples, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";") if frame and not frame.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not frame.endswith(_PLUMBING):
                inclusive[frame] += count
    if not total:
        return f"{raw.name}: no samples"
    lines = [f"{raw.name}: {total} samples", "", "own %  | function", "---|---"]
    lines += [f"{100 * n / total:5.1f} | {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive % | function", "---|---"]
    lines += [f"{100 * n / total:5.1f} | {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
