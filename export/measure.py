"""Parity and speed of one servable, through the model server runtime that will serve it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from serving.modelserver.runtimes.base import DEFAULT_SIGNATURE, Model

EVAL_BATCH = 256
THROUGHPUT_BATCH = 64


@dataclass(frozen=True)
class Outputs:
    probabilities: np.ndarray
    class_id: np.ndarray


@dataclass(frozen=True)
class Speed:
    p50_ms: float
    p99_ms: float
    batch1_runs: int
    throughput_per_s: float  # images per second at batch 64
    throughput_runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict_all(model: Model, images: np.ndarray) -> Outputs:
    signature = model.signatures[DEFAULT_SIGNATURE]
    probabilities, classes = [], []
    for start in range(0, len(images), EVAL_BATCH):
        result = model.predict(signature, {"image": images[start : start + EVAL_BATCH]}, ["probabilities", "class_id"])
        probabilities.append(result["probabilities"])
        classes.append(result["class_id"])
    return Outputs(np.concatenate(probabilities), np.concatenate(classes))


def parity(outputs: Outputs, reference: Outputs, labels: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float((outputs.class_id == labels).mean()),
        "agreement": float((outputs.class_id == reference.class_id).mean()),
        "max_abs_diff": float(np.abs(outputs.probabilities.astype(np.float64) - reference.probabilities).max()),
    }


def speed(model: Model, images: np.ndarray, batch1_runs: int, throughput_runs: int) -> Speed:
    signature = model.signatures[DEFAULT_SIGNATURE]
    outputs = sorted(signature.outputs)

    def run(batch: np.ndarray) -> None:
        model.predict(signature, {"image": batch}, outputs)

    singles = [images[index % len(images)][None] for index in range(batch1_runs)]
    for single in singles[: min(10, batch1_runs)]:
        run(single)
    latencies = []
    for single in singles:
        started = time.perf_counter()
        run(single)
        latencies.append(time.perf_counter() - started)
    batch = np.ascontiguousarray(np.resize(images, (THROUGHPUT_BATCH, *images.shape[1:])))
    run(batch)
    started = time.perf_counter()
    for _ in range(throughput_runs):
        run(batch)
    elapsed = time.perf_counter() - started
    return Speed(
        p50_ms=float(np.percentile(latencies, 50) * 1000),
        p99_ms=float(np.percentile(latencies, 99) * 1000),
        batch1_runs=batch1_runs,
        throughput_per_s=THROUGHPUT_BATCH * throughput_runs / elapsed,
        throughput_runs=throughput_runs,
    )
