"""The calibrated combination of a gateway ensemble, read from the ensemble SavedModel's model card.

``python -m training`` fits a temperature and a weight per member on the validation split and writes them
into ``<repo>/ensemble/<version>/assets.extra/model_card.json`` (``combination``). A fan-out ensemble
whose members are the same servables applies the same arithmetic (training.calibration), so it answers
as the ensemble SavedModel does:

- ``logit``: ``softmax(sum_m w_m * log(max(p_m, clip)) / T_m)``
- ``mean``: ``sum_m w_m * softmax(log(max(p_m, clip)) / T_m)``

When a member does not answer (quorum), ``logit`` sums the members that did, ``mean`` renormalises
their weights. Numpy only: the gateway does not import TensorFlow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

log = logging.getLogger("tensorgate.gateway.calibration")

MODES = ("logit", "mean")


@dataclass(frozen=True)
class Calibration:
    """Per member (in the ensemble's member order): temperature and weight; ``source`` names the card."""

    mode: str
    temperatures: tuple[float, ...]
    weights: tuple[float, ...]
    clip: float
    source: str

    def combine(self, member_probabilities: list[tuple[int, np.ndarray]]) -> np.ndarray:
        """(member index, [batch, classes]) for the members that answered -> [batch, classes] float32."""
        indices = [index for index, _ in member_probabilities]
        stacked = np.stack([np.asarray(p, dtype=np.float64) for _, p in member_probabilities])  # [m, batch, k]
        temperatures = np.asarray([self.temperatures[i] for i in indices])[:, None, None]
        weights = np.asarray([self.weights[i] for i in indices])[:, None, None]
        scaled = np.log(np.clip(stacked, self.clip, 1.0)) / temperatures
        if self.mode == "logit":
            combined = _softmax((weights * scaled).sum(axis=0))
        else:
            total = weights.sum()
            weights = weights / total if total > 0 else np.full_like(weights, 1.0 / len(indices))
            combined = (weights * _softmax(scaled)).sum(axis=0)
        return combined.astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return result


def latest_card(repo: Path, servable: str) -> Path | None:
    try:
        versions = [int(name) for name in os.listdir(repo / servable) if name.isdigit()]
    except OSError:
        return None
    return repo / servable / str(max(versions)) / "assets.extra" / "model_card.json" if versions else None


def read_calibration(card_path: Path, members: list[str]) -> Calibration | None:
    """The card's combination in ``members`` order; None (with the reason logged) when it has none for
    exactly these members."""
    try:
        card = orjson.loads(card_path.read_bytes())
        combination = card["combination"]
        names = [str(name) for name in combination["members"]]
        mode = str(combination["mode"])
        temperatures = [float(value) for value in combination["temperatures"]]
        weights = [float(value) for value in combination["weights"]]
        clip = float(combination.get("clip", 1e-12))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        log.info("%s: no usable combination (%s); plain voting", card_path, error)
        return None
    valid = (
        mode in MODES
        and len(names) == len(temperatures) == len(weights)
        and min(temperatures, default=0) > 0
        and min(weights, default=-1) >= 0
        and 0 < clip < 1
    )
    if not valid:
        log.warning("%s: malformed combination; plain voting", card_path)
        return None
    if sorted(names) != sorted(members):
        log.info("%s: combination is for %s, not %s; plain voting", card_path, names, members)
        return None
    order = [names.index(member) for member in members]
    return Calibration(
        mode,
        tuple(temperatures[i] for i in order),
        tuple(weights[i] for i in order),
        clip,
        str(card_path),
    )
