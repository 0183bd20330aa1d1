"""Prometheus metrics with TF Serving's names (``:tensorflow:serving:request_count`` ...).

TF Serving exports its counters without the ``_total`` suffix that prometheus-client's exposition
always appends, so this small registry writes the text format itself to keep the names a TF Serving
dashboard already queries.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

# Microsecond buckets, like TF Serving's latency samplers (exponential, x1.8 from 10us).
LATENCY_BUCKETS_US: tuple[float, ...] = tuple(float(round(10 * 1.8**i)) for i in range(33))
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0)

    def expose(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for labels, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(self.label_names, labels)} {_number(value)}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.buckets) + 3)
            series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return int(series[-1]) if series else 0

    def bucket_counts(self, *labels: str) -> dict[float, int]:
        """Observations per bucket upper bound (not cumulative), for tests and reports."""
        series = self._series.get(labels)
        if not series:
            return {}
        return {bound: int(series[i]) for i, bound in enumerate(self.buckets) if series[i]}

    def expose(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for labels, series in sorted(self._series.items()):
                cumulative = 0.0
                for index, bound in enumerate(self.buckets):
                    cumulative += series[index]
                    extra = f'le="{_number(bound)}"'
                    lines.append(f"{self.name}_bucket{_labels(self.label_names, labels, extra)} {_number(cumulative)}")
                cumulative += series[len(self.buckets)]
                inf = _labels(self.label_names, labels, 'le="+Inf"')
                lines.append(f"{self.name}_bucket{inf} {_number(cumulative)}")
                lines.append(f"{self.name}_sum{_labels(self.label_names, labels)} {_number(series[-2])}")
                lines.append(f"{self.name}_count{_labels(self.label_names, labels)} {_number(series[-1])}")
        return lines


class Metrics:
    """The model server's metrics (one instance per server)."""

    def __init__(self) -> None:
        self.request_count = Counter(
            ":tensorflow:serving:request_count", "The total number of requests.", ("model_name", "status")
        )
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            LATENCY_BUCKETS_US,
        )
        self.runtime_latency = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Runtime.",
            ("model_name", "API", "runtime"),
            LATENCY_BUCKETS_US,
        )
        self.processed_batch_size = Histogram(
            ":tensorflow:serving:batching:processed_batch_size",
            "Tracks the batch size distribution on processing (after padding).",
            ("model_name", "op_name"),
            BATCH_SIZE_BUCKETS,
        )
        self.input_batch_size = Histogram(
            ":tensorflow:serving:batching:input_batch_size",
            "Tracks the batch size distribution on the inputs by model_name (if exists).",
            ("model_name", "op_name"),
            BATCH_SIZE_BUCKETS,
        )
        self.padding_size = Histogram(
            ":tensorflow:serving:batching:padding_size",
            "Tracks the padding size distribution on batches by model_name (if exists).",
            ("model_name", "execution_batch_size"),
            BATCH_SIZE_BUCKETS,
        )
        self.batch_delay = Histogram(
            ":tensorflow:serving:batching:batch_delay_us",
            "Tracks the batching delay (in microseconds) for inputs by model_name (if exists).",
            ("model_name", "op_name"),
            LATENCY_BUCKETS_US,
        )
        self.load_attempt_count = Counter(
            ":tensorflow:serving:load_attempt_count",
            "The number of times a model version was attempted to load.",
            ("model_path", "status"),
        )

    def expose(self) -> bytes:
        lines: list[str] = []
        for metric in (
            self.request_count,
            self.request_latency,
            self.runtime_latency,
            self.processed_batch_size,
            self.input_batch_size,
            self.padding_size,
            self.batch_delay,
            self.load_attempt_count,
        ):
            lines.extend(metric.expose())
        return ("\n".join(lines) + "\n").encode("utf-8")
