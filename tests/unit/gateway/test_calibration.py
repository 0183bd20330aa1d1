"""Gateway ensembles with the ensemble model card's temperatures and weights (serving.gateway.calibration)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.gateway.calibration import latest_card, read_calibration
from serving.gateway.config import EnsembleConfig
from serving.gateway.context import CallContext
from serving.gateway.ensembles import Ensemble
from serving.gateway.metrics import Metrics
from serving.predict import ModelSpec, Predict, Prediction
from training.calibration import Combination

MEMBERS = ["cnn", "lstm", "transformer"]
RNG = np.random.default_rng(0)
PROBABILITIES = {name: RNG.dirichlet(np.full(10, 0.4), 5).astype(np.float32) for name in MEMBERS}
PROBABILITIES["lstm"][0] = np.eye(10, dtype=np.float32)[2]  # exact zeros: clipped before the log


def write_card(repo: Path, version: int, combination: dict[str, Any] | None) -> Path:
    path = repo / "ensemble" / str(version) / "assets.extra" / "model_card.json"
    path.parent.mkdir(parents=True)
    card: dict[str, Any] = {"name": "ensemble", "kind": "ensemble"}
    if combination is not None:
        card["combination"] = combination
    path.write_text(json.dumps(card))
    return path


def combination(mode: str, members: list[str] = MEMBERS) -> dict[str, Any]:
    weights = [0.6, 0.3, 0.1] if mode == "mean" else [1.1, 0.8, 0.2]
    return {"mode": mode, "members": members, "temperatures": [0.9, 1.4, 2.5], "weights": weights, "clip": 1e-12}


@pytest.mark.parametrize("mode", ["logit", "mean"])
def test_combine_matches_the_training_arithmetic(tmp_path: Path, mode: str) -> None:
    card = write_card(tmp_path, 1, combination(mode))
    calibration = read_calibration(card, MEMBERS)
    assert calibration is not None
    stacked = np.stack([PROBABILITIES[name] for name in MEMBERS], axis=1)
    expected = Combination.from_dict(combination(mode)).apply(stacked)
    combined = calibration.combine([(index, PROBABILITIES[name]) for index, name in enumerate(MEMBERS)])
    assert combined.dtype == np.float32
    np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-7)


def test_members_in_another_order_are_matched_by_name(tmp_path: Path) -> None:
    card = write_card(tmp_path, 1, combination("logit"))
    calibration = read_calibration(card, ["transformer", "cnn", "lstm"])
    assert calibration is not None
    assert calibration.temperatures == (2.5, 0.9, 1.4) and calibration.weights == (0.2, 1.1, 0.8)


def test_missing_member_logit_sums_the_rest_mean_renormalises(tmp_path: Path) -> None:
    for mode in ("logit", "mean"):
        calibration = read_calibration(write_card(tmp_path / mode, 1, combination(mode)), MEMBERS)
        assert calibration is not None
        partial = calibration.combine([(0, PROBABILITIES["cnn"]), (2, PROBABILITIES["transformer"])])
        stacked = np.stack([PROBABILITIES["cnn"], PROBABILITIES["transformer"]], axis=1)
        weights = [1.1, 0.2] if mode == "logit" else [0.6 / 0.7, 0.1 / 0.7]
        expected = Combination(mode, [0.9, 2.5], weights).apply(stacked)
        np.testing.assert_allclose(partial, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "bad",
    [
        None,  # a card without a combination (trained before calibration existed)
        combination("logit", ["cnn", "lstm"]),  # other members
        {**combination("logit"), "mode": "median"},
        {**combination("logit"), "temperatures": [1.0, 0.0, 1.0]},
        {**combination("mean"), "weights": [1.0]},
        {"mode": "logit"},
    ],
)
def test_cards_that_do_not_fit_give_plain_voting(tmp_path: Path, bad: dict[str, Any] | None) -> None:
    assert read_calibration(write_card(tmp_path, 1, bad), MEMBERS) is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert read_calibration(broken, MEMBERS) is None


def test_latest_card_is_the_highest_version(tmp_path: Path) -> None:
    assert latest_card(tmp_path, "ensemble") is None
    write_card(tmp_path, 2, None)
    newest = write_card(tmp_path, 10, None)
    (tmp_path / "ensemble" / ".staging-11-123").mkdir()
    assert latest_card(tmp_path, "ensemble") == newest


class Members:
    """A forward() that answers each member's request with its fixed probabilities."""

    def __init__(self, failing: str | None = None) -> None:
        self.failing = failing

    async def __call__(self, servable: str, request: Predict, call: CallContext) -> Prediction:
        if servable == self.failing:
            raise TimeoutError
        assert request.spec.name == servable and request.inputs["image"].shape == (5, 28, 28, 1)
        return Prediction({"probabilities": PROBABILITIES[servable]}, servable, 1)


def predict(ensemble: Ensemble, forward: Members) -> dict[str, np.ndarray]:
    request = Predict(ModelSpec(ensemble.name), {"image": np.zeros((5, 28, 28, 1), np.float32)})
    call = CallContext(request_id="test", deadline=time.monotonic() + 5)
    answer, _ = asyncio.run(ensemble.predict(request, call, forward))
    return answer.outputs


@pytest.mark.parametrize("voting", ["soft", "hard"])
def test_gateway_ensemble_uses_the_card_and_notices_a_newer_one(tmp_path: Path, voting: str) -> None:
    write_card(tmp_path, 1, combination("logit"))
    config = EnsembleConfig.model_validate({"members": MEMBERS, "voting": voting, "quorum": 2})
    ensemble = Ensemble("vote", config, Metrics(), tmp_path)
    stacked = np.stack([PROBABILITIES[name] for name in MEMBERS], axis=1)
    answer = predict(ensemble, Members())
    expected = Combination.from_dict(combination("logit")).apply(stacked)
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-7)
    if voting == "soft":
        assert answer["class_id"].tolist() == expected.argmax(axis=1).tolist()
    else:
        counts = np.eye(10)[stacked.argmax(axis=2)].sum(axis=1)
        assert answer["class_id"].tolist() == (counts + 0.5 * expected).argmax(axis=1).tolist()
    # a member times out: the two that answered are combined with their own temperatures and weights
    degraded = predict(ensemble, Members(failing="lstm"))
    partial = Combination("logit", [0.9, 2.5], [1.1, 0.2]).apply(stacked[:, [0, 2]])
    np.testing.assert_allclose(degraded["probabilities"], partial, rtol=1e-5, atol=1e-7)
    # a newer ensemble version is read once the check interval has passed
    write_card(tmp_path, 2, combination("mean"))
    ensemble._next_check = 0.0
    newer = predict(ensemble, Members())
    np.testing.assert_allclose(
        newer["probabilities"], Combination.from_dict(combination("mean")).apply(stacked), rtol=1e-5, atol=1e-7
    )


def test_without_a_card_or_with_weighted_voting_the_old_votes_stay(tmp_path: Path) -> None:
    stacked = np.stack([PROBABILITIES[name] for name in MEMBERS], axis=1)
    soft = Ensemble("vote", EnsembleConfig.model_validate({"members": MEMBERS}), Metrics(), tmp_path)
    np.testing.assert_allclose(predict(soft, Members())["probabilities"], stacked.mean(axis=1), atol=1e-6)
    write_card(tmp_path, 1, combination("logit"))
    weighted = EnsembleConfig.model_validate({"members": MEMBERS, "voting": "weighted", "weights": [1, 1, 2]})
    answer = predict(Ensemble("vote", weighted, Metrics(), tmp_path), Members())
    np.testing.assert_allclose(
        answer["probabilities"], np.tensordot([0.25, 0.25, 0.5], stacked, axes=([0], [1])), atol=1e-6
    )
    off = EnsembleConfig.model_validate({"members": MEMBERS, "calibration_from": None})
    np.testing.assert_allclose(
        predict(Ensemble("vote", off, Metrics(), tmp_path), Members())["probabilities"], stacked.mean(axis=1), atol=1e-6
    )
