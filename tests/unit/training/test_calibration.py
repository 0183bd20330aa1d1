"""training.calibration: temperatures, combination weights, ECE, confidence intervals, McNemar."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.calibration import (
    Combination,
    expected_calibration_error,
    fit_combination,
    fit_temperature,
    log_loss,
    mcnemar,
    scale_temperature,
    softmax,
    wilson_interval,
)


def _member(rng: np.random.Generator, labels: np.ndarray, noise: float, sharpness: float) -> np.ndarray:
    """Probabilities whose logits are signal + noise, sharpened (overconfident) or softened."""
    logits = rng.normal(0.0, noise, (len(labels), 10))
    logits[np.arange(len(labels)), labels] += 2.0
    return softmax(logits * sharpness)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 10, 4000)


def test_temperature_undoes_a_known_sharpening(labels):
    rng = np.random.default_rng(2)
    calibrated_logits = rng.normal(0.0, 1.0, (len(labels), 10))
    calibrated_logits[np.arange(len(labels)), labels] += 2.0
    best = fit_temperature(softmax(calibrated_logits), labels)
    sharpened = fit_temperature(softmax(calibrated_logits * 3.0), labels)
    assert sharpened == pytest.approx(3.0 * best, rel=1e-3)
    overconfident = softmax(calibrated_logits * 3.0)
    assert log_loss(scale_temperature(overconfident, sharpened), labels) < log_loss(overconfident, labels) - 0.05


def test_ece_drops_after_temperature_scaling(labels):
    overconfident = _member(np.random.default_rng(3), labels, noise=1.0, sharpness=4.0)
    temperature = fit_temperature(overconfident, labels)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(scale_temperature(overconfident, temperature), labels)
    assert temperature > 1.5 and before > 0.05 and after < before / 3


def test_ece_of_a_perfectly_calibrated_rule():
    # Confidence 0.75 everywhere and right three times in four: zero error; always right at 0.75: 0.25.
    probabilities = np.tile([[0.75, 0.25]], (8, 1))
    assert expected_calibration_error(probabilities, np.array([0, 0, 0, 1] * 2)) == pytest.approx(0.0)
    assert expected_calibration_error(probabilities, np.zeros(8, int)) == pytest.approx(0.25)


def test_fitted_combination_beats_equal_weights_and_the_best_member(labels):
    rng = np.random.default_rng(4)
    members = np.stack(
        [
            _member(rng, labels, noise=0.9, sharpness=3.0),  # good but overconfident
            _member(rng, labels, noise=1.3, sharpness=0.5),  # weaker, underconfident
            _member(rng, labels, noise=2.5, sharpness=1.0),  # close to useless
        ],
        axis=1,
    )
    combination, summary = fit_combination(members, labels)
    assert summary[combination.mode]["log_loss"] == min(summary["logit"]["log_loss"], summary["mean"]["log_loss"])
    assert summary[combination.mode]["log_loss"] < summary["equal"]["log_loss"] - 0.05
    best_member = max(float((members[:, m].argmax(1) == labels).mean()) for m in range(3))
    assert summary[combination.mode]["accuracy"] > best_member
    # the useless member counts least (its weight over its temperature multiplies its log-probabilities)
    assert combination.mode == "logit"
    assert int(np.argmin(np.asarray(combination.weights) / np.asarray(combination.temperatures))) == 2
    combined = combination.apply(members)
    np.testing.assert_allclose(combined.sum(axis=1), 1.0, atol=1e-9)
    assert log_loss(combined, labels) == pytest.approx(summary[combination.mode]["log_loss"])


def test_mixture_weights_pick_the_only_informative_member(labels):
    rng = np.random.default_rng(5)
    informative = _member(rng, labels, noise=0.5, sharpness=1.0)
    uniform = np.full_like(informative, 0.1)
    _, summary = fit_combination(np.stack([uniform, informative], axis=1), labels)
    assert summary["mean"]["accuracy"] == pytest.approx(float((informative.argmax(1) == labels).mean()))


def test_combination_formulas_by_hand():
    p = np.array([[[0.5, 0.5], [0.9, 0.1]]])  # one row, two members, two classes
    logit = Combination("logit", [1.0, 2.0], [1.0, 1.0]).apply(p)
    expected = softmax(np.log([0.5, 0.5]) + np.log([0.9, 0.1]) / 2.0)
    np.testing.assert_allclose(logit[0], expected)
    mean = Combination("mean", [1.0, 1.0], [0.25, 0.75]).apply(p)
    np.testing.assert_allclose(mean[0], [0.25 * 0.5 + 0.75 * 0.9, 0.25 * 0.5 + 0.75 * 0.1])
    assert Combination.equal(2).apply(p)[0] == pytest.approx([0.7, 0.3])
    with pytest.raises(ValueError, match="combination mode 'max'"):
        Combination("max", [1.0], [1.0])
    with pytest.raises(ValueError, match="temperatures must be positive"):
        Combination("mean", [0.0], [1.0])
    assert Combination.from_dict(Combination("logit", [1.5], [2.0]).to_dict()) == Combination("logit", [1.5], [2.0])


def test_wilson_interval_known_values():
    low, high = wilson_interval(9400, 10_000)
    assert (round(low, 4), round(high, 4)) == (0.9352, 0.9445)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_mcnemar_exact_two_sided():
    first = np.array([True] * 12 + [False] * 3 + [True] * 80)
    second = np.array([False] * 12 + [True] * 3 + [True] * 80)
    result = mcnemar(first, second)
    assert result["only_first"] == 12 and result["only_second"] == 3
    expected = 2 * sum(math.comb(15, k) for k in range(4)) / 2**15
    assert result["p_value"] == pytest.approx(expected) and result["p_value"] == pytest.approx(0.03516, abs=1e-5)
    assert mcnemar(first, first)["p_value"] == 1.0


def test_temperature_over_two_views_scores_their_scaled_mean(labels):
    # Two views of the same images (an image and its mirror image): the fit scores the mean of the two
    # scaled views, which is what a model with flip averaging serves, not the scaled mean.
    rng = np.random.default_rng(5)
    views = [_member(rng, labels, noise=1.0, sharpness=3.0) for _ in range(2)]
    temperature = fit_temperature(views, labels)
    served = (scale_temperature(views[0], temperature) + scale_temperature(views[1], temperature)) / 2
    for nearby in (temperature * 0.9, temperature * 1.1):
        other = (scale_temperature(views[0], nearby) + scale_temperature(views[1], nearby)) / 2
        assert log_loss(served, labels) < log_loss(other, labels)
    assert temperature != pytest.approx(fit_temperature((views[0] + views[1]) / 2, labels), rel=1e-2)
