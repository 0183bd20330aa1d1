"""Per-request-name counts of checked images and wrong classes, and exact request statistics.

Locust's own percentiles are rounded to whole milliseconds (to 10 ms above 100 ms), too coarse for a
1 ms goal, and its CSV is written once a second, so a step's last second can be missing from it. Each
process therefore also keeps the exact response times it saw (up to ``MAX_SAMPLES`` per name), its
failures, and the wall-clock window of its requests; the runner's numbers come from these.
In distributed mode each worker sends its counts, response times, failures and windows to the master
with each report (``take_requests`` / ``merge_requests``), so the master's file is as exact as a
single process's.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

MAX_SAMPLES = 2_000_000


class Answers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.counts: dict[str, list[int]] = {}
            self.samples: dict[str, list[float]] = {}
            self.failures: dict[str, int] = {}
            self.window: dict[str, list[float]] = {}
            self.errors: dict[str, dict[str, int]] = {}

    def record(self, name: str, images: int, wrong: int) -> None:
        with self._lock:
            counts = self.counts.setdefault(name, [0, 0])
            counts[0] += images
            counts[1] += wrong

    def request(self, name: str, milliseconds: float, failed: bool, error: str = "") -> None:
        """One finished request (from Locust's request event); ``error`` says why it failed."""
        end = time.time()
        window = self.window.setdefault(name, [end - milliseconds / 1000, end])
        window[0] = min(window[0], end - milliseconds / 1000)
        window[1] = end
        if failed:
            self.failures[name] = self.failures.get(name, 0) + 1
            errors = self.errors.setdefault(name, {})
            if error in errors or len(errors) < 20:
                errors[error] = errors.get(error, 0) + 1
            return
        samples = self.samples.setdefault(name, [])
        if len(samples) < MAX_SAMPLES:
            samples.append(milliseconds)

    def take_counts(self) -> dict[str, list[int]]:
        """The counts since the last call, then zero (a worker's report to its master)."""
        with self._lock:
            taken, self.counts = self.counts, {}
        return taken

    def merge_counts(self, counts: dict[str, list[int]]) -> None:
        for name, (images, wrong) in counts.items():
            self.record(name, int(images), int(wrong))

    def take_requests(self) -> dict[str, Any]:
        """Response times, failures, errors and windows since the last call, then cleared (a worker's report)."""
        with self._lock:
            taken = {"samples": self.samples, "failures": self.failures, "window": self.window, "errors": self.errors}
            self.samples, self.failures, self.window, self.errors = {}, {}, {}, {}
        return taken

    def merge_requests(self, taken: dict[str, Any]) -> None:
        """A worker's ``take_requests`` into this (the master's) totals."""
        with self._lock:
            for name, values in (taken.get("samples") or {}).items():
                samples = self.samples.setdefault(name, [])
                samples.extend(values[: max(0, MAX_SAMPLES - len(samples))])
            for name, count in (taken.get("failures") or {}).items():
                self.failures[name] = self.failures.get(name, 0) + int(count)
            for name, (start, end) in (taken.get("window") or {}).items():
                window = self.window.setdefault(name, [start, end])
                window[0], window[1] = min(window[0], start), max(window[1], end)
            for name, found in (taken.get("errors") or {}).items():
                errors = self.errors.setdefault(name, {})
                for error, count in found.items():
                    if error in errors or len(errors) < 20:
                        errors[error] = errors.get(error, 0) + int(count)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = {name: list(value) for name, value in self.counts.items()}
            samples = {name: np.asarray(values) for name, values in self.samples.items() if values}
        answers = {
            name: {"images": images, "wrong": wrong, "wrong_pct": 100.0 * wrong / images if images else 0.0}
            for name, (images, wrong) in counts.items()
        }
        latency = {
            name: {
                "count": int(values.size),
                "failures": self.failures.get(name, 0),
                "window_start": self.window[name][0],
                "window_s": self.window[name][1] - self.window[name][0],
                "p50": float(np.percentile(values, 50)),
                "p95": float(np.percentile(values, 95)),
                "p99": float(np.percentile(values, 99)),
                "max": float(values.max()),
                "mean": float(values.mean()),
            }
            for name, values in samples.items()
        }
        for name, failures in self.failures.items():
            if name not in latency:
                latency[name] = {
                    "count": 0,
                    "failures": failures,
                    "window_start": self.window[name][0],
                    "window_s": self.window[name][1] - self.window[name][0],
                }
        errors = {name: dict(sorted(found.items(), key=lambda item: -item[1])) for name, found in self.errors.items()}
        return {"answers": answers, "requests": latency, "errors": errors}

    def write(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.summary(), option=orjson.OPT_INDENT_2))


ANSWERS = Answers()
