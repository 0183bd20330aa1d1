"""Calibration and combination of class probabilities, in numpy (no TensorFlow).

An ensemble combines its members' probabilities ``p_m`` after scaling each member's log-probabilities
by a temperature ``T_m`` fitted alone, in one of two ways:

- ``logit``: ``softmax(sum_m w_m * log(p_m) / T_m)`` (calibrated logits, weighted);
- ``mean``: ``sum_m w_m * softmax(log(p_m) / T_m)`` with the weights summing to 1.

Temperatures and weights are fitted on a validation split by minimising its log-loss; the mode with
the lower log-loss is kept. The same arithmetic runs in the ensemble's graph (training.ensemble) and
in the gateway's fan-out ensembles (serving.gateway.ensembles), which read it from the model card.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Probabilities are clipped here before the log, in every place that combines them.
EPS = 1e-12
MODES = ("logit", "mean")


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, EPS, 1.0)).mean())


def fit_temperature(probabilities: np.ndarray | list[np.ndarray], labels: np.ndarray) -> float:
    """The temperature T minimising the validation log-loss of softmax(log(p) / T) (golden-section on log T).

    ``probabilities`` may be a list of views of the same images (an image and its mirror image): the
    scaled probabilities of the views are then averaged, as a model with test-time averaging serves them.
    Since log(p) is the model's logits less a constant per image, softmax(log(p) / T) = softmax(logits / T).
    """
    views = [
        log_probabilities(view) for view in (probabilities if isinstance(probabilities, list) else [probabilities])
    ]

    def loss(log_t: float) -> float:
        t = math.exp(log_t)
        return log_loss(np.mean([softmax(view / t) for view in views], axis=0), labels)

    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(math.exp((low + high) / 2))


@dataclass(frozen=True)
class Combination:
    """How an ensemble combines its members (in member order); saved in its model card."""

    mode: str
    temperatures: list[float]
    weights: list[float]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"combination mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if len(self.temperatures) != len(self.weights) or not self.weights:
            raise ValueError("a combination needs one temperature and one weight per member")
        if min(self.temperatures) <= 0 or min(self.weights) < 0:
            raise ValueError("temperatures must be positive and weights non-negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Combination:
        return cls(str(value["mode"]), [float(t) for t in value["temperatures"]], [float(w) for w in value["weights"]])

    @classmethod
    def equal(cls, members: int) -> Combination:
        """The plain soft vote: the mean of the members' probabilities."""
        return cls("mean", [1.0] * members, [1.0 / members] * members)

    def apply(self, member_probabilities: np.ndarray) -> np.ndarray:
        """[batch, members, classes] -> combined probabilities [batch, classes] (float64)."""
        logp = log_probabilities(member_probabilities)
        scaled = logp / np.asarray(self.temperatures)[None, :, None]
        weights = np.asarray(self.weights)[None, :, None]
        if self.mode == "logit":
            return softmax((weights * scaled).sum(axis=1))
        combined: np.ndarray = (weights * softmax(scaled)).sum(axis=1)
        return combined


def _fit_logit_weights(scaled: np.ndarray, labels: np.ndarray, steps: int = 100) -> np.ndarray:
    """Non-negative a minimising the log-loss of softmax(sum_m a_m * scaled_m): projected Newton.

    The loss is convex in a (a multinomial logistic regression whose features are the members'
    calibrated logits), so this converges from the equal-weight start.
    """
    members = scaled.shape[1]
    rows = np.arange(len(labels))
    a = np.full(members, 1.0 / members)
    for _ in range(steps):
        q = softmax(np.einsum("m,bmk->bk", a, scaled))
        # gradient: mean over rows of E_q[z_m] - z_m[label]
        expected = np.einsum("bk,bmk->bm", q, scaled)
        gradient = (expected - scaled[rows, :, labels]).mean(axis=0)
        centred = scaled - expected[:, :, None]
        hessian = np.einsum("bk,bmk,bnk->mn", q, centred, centred) / len(labels)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(members), gradient)
        new = np.maximum(a - step, 0.0)
        if np.abs(new - a).max() < 1e-9:
            a = new
            break
        a = new
    return a


def _fit_mixture_weights(calibrated: np.ndarray, labels: np.ndarray, steps: int = 500) -> np.ndarray:
    """Simplex weights maximising the likelihood of sum_m w_m q_m(label): expectation-maximisation."""
    members = calibrated.shape[1]
    picked = calibrated[np.arange(len(labels)), :, labels]  # [batch, members]
    w = np.full(members, 1.0 / members)
    for _ in range(steps):
        joint = picked * w
        responsibility = joint / np.clip(joint.sum(axis=1, keepdims=True), EPS, None)
        new = responsibility.mean(axis=0)
        if np.abs(new - w).max() < 1e-10:
            return new
        w = new
    return w


def fit_combination(member_probabilities: np.ndarray, labels: np.ndarray) -> tuple[Combination, dict[str, Any]]:
    """Fit temperatures and both modes' weights on [batch, members, classes]; keep the lower log-loss.

    Returns the kept combination and a summary of the fit (log-loss and accuracy of each mode).
    """
    members = member_probabilities.shape[1]
    temperatures = [fit_temperature(member_probabilities[:, m], labels) for m in range(members)]
    scaled = log_probabilities(member_probabilities) / np.asarray(temperatures)[None, :, None]
    a = _fit_logit_weights(scaled, labels)
    candidates = {
        "logit": Combination("logit", temperatures, [float(a_m) for a_m in a]),
        "mean": Combination("mean", temperatures, [float(w) for w in _fit_mixture_weights(softmax(scaled), labels)]),
    }
    summary: dict[str, Any] = {}
    for mode, combination in [("equal", Combination.equal(members)), *candidates.items()]:
        combined = combination.apply(member_probabilities)
        summary[mode] = {
            "log_loss": log_loss(combined, labels),
            "accuracy": float((combined.argmax(axis=1) == labels).mean()),
        }
    best = min(candidates, key=lambda mode: summary[mode]["log_loss"])
    return candidates[best], summary


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-1 ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| * share."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        chosen = which == index
        if chosen.any():
            error += abs(correct[chosen].mean() - confidence[chosen].mean()) * chosen.mean()
    return float(error)


def scale_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(log_probabilities(probabilities) / temperature)


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    share = correct / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(first_correct: np.ndarray, second_correct: np.ndarray) -> dict[str, float | int]:
    """McNemar's exact test on paired predictions: the two-sided binomial p-value of the discordant pairs.

    ``only_first``: images the first model gets right and the second wrong; ``only_second`` the reverse.
    """
    only_first = int((first_correct & ~second_correct).sum())
    only_second = int((~first_correct & second_correct).sum())
    discordant = only_first + only_second
    if discordant == 0:
        return {"only_first": 0, "only_second": 0, "p_value": 1.0}
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1))
    p_value = min(1.0, 2 * tail / 2**discordant)
    return {"only_first": only_first, "only_second": only_second, "p_value": float(p_value)}
