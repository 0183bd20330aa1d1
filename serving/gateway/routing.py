"""Weighted routes (sticky per request key) and the votes of gateway ensembles."""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence

import numpy as np

from serving.gateway.config import RouteConfig


class Route:
    """A name that sends each request to one servable of its split, by weight.

    With a request key, the choice is a hash of route name and key, so a caller stays on one servable
    while the weights stay the same; without one it is random.
    """

    def __init__(self, name: str, config: RouteConfig) -> None:
        self.name = name
        self.servables = list(config.split)
        total = sum(config.split.values())
        running = 0.0
        self._cumulative: list[float] = []
        for weight in config.split.values():
            running += weight / total
            self._cumulative.append(running)
        self._cumulative[-1] = 1.0
        self.primary = max(config.split, key=lambda servable: config.split[servable])
        self.shadow = config.shadow
        self._shadow_fraction = config.shadow_fraction
        self._salt = name.encode("utf-8") + b"\x00"

    def choose(self, request_key: str | None) -> str:
        if request_key:
            digest = hashlib.blake2b(self._salt + request_key.encode("utf-8"), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / 2.0**64
        else:
            point = random.random()
        index = min(bisect.bisect_right(self._cumulative, point), len(self.servables) - 1)
        return self.servables[index]

    def mirror(self) -> bool:
        return self.shadow is not None and random.random() < self._shadow_fraction


def top_classes(outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Top-1 class per row of a contract answer: ``class_id`` or argmax ``probabilities``."""
    if "class_id" in outputs:
        return outputs["class_id"].reshape(-1).astype(np.int64)
    if "probabilities" in outputs:
        return outputs["probabilities"].argmax(axis=-1).reshape(-1).astype(np.int64)
    return None


def vote(
    member_probabilities: Sequence[np.ndarray], voting: str, weights: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Combine members' ``[batch, classes]`` probabilities: (probabilities, class_id).

    soft: mean probabilities, argmax. weighted: weighted mean, argmax. hard: each member votes its
    top-1 class; most votes wins, ties go to the higher mean probability; the probabilities returned
    are the mean, so they explain the tie-break.
    """
    stacked = np.stack([np.asarray(p, dtype=np.float32) for p in member_probabilities])  # [members, batch, k]
    if voting == "weighted":
        if weights is None:
            raise ValueError("weighted voting needs weights")
        w = np.asarray(weights, dtype=np.float32)
        probabilities = np.tensordot(w / w.sum(), stacked, axes=1)
    else:
        probabilities = stacked.mean(axis=0)
    if voting != "hard":
        return probabilities.astype(np.float32), probabilities.argmax(axis=-1).astype(np.int64)
    votes = stacked.argmax(axis=-1)  # [members, batch]
    classes = stacked.shape[-1]
    counts = np.stack([np.bincount(votes[:, row], minlength=classes) for row in range(votes.shape[1])])
    # Probabilities are < 1, so half of them breaks ties without overturning a one-vote lead.
    score = counts + 0.5 * probabilities
    return probabilities.astype(np.float32), score.argmax(axis=-1).astype(np.int64)
