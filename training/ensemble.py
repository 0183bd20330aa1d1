"""The ensemble, built from the latest trained members (never retrained) and calibrated on validation data.

Outputs: ``probabilities``, the calibrated weighted combination of the members' (training.calibration:
a temperature per member and weights fitted on the validation split by minimising its log-loss, as
calibrated logits or as a weighted mean, whichever fits better); ``class_id``, its argmax;
``hard_vote_class_id``, the members' majority with ties broken by ``probabilities``; and
``member_probabilities`` [batch, members, classes]. The combination is written into the model card,
where the gateway's fan-out ensembles read it.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import training.models.transformer  # noqa: F401  (registers the custom layers for loading)
from training.calibration import EPS, Combination, fit_combination
from training.data import Dataset, subset
from training.models.registry import TRAINABLE_NAMES, image_input
from training.repository import RepositoryError, latest_version, new_version
from training.savedmodel import read_model_card, write_savedmodel
from training.train import TrainResult, duration, git_commit, input_contract, library_versions

MEMBERS = TRAINABLE_NAMES


@keras.saving.register_keras_serializable(package="tensorgate")
class Vote(layers.Layer):
    """Stacked member probabilities [batch, members, classes] -> the ensemble's outputs.

    Plain TensorFlow ops (tf.argmax, not Keras' argmax, which emits ops TFLite and ONNX lack), so the
    export converts this same layer.
    """

    def __init__(self, combination: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.combination = Combination.from_dict(combination) if combination else Combination.equal(len(MEMBERS))

    def call(self, member_probabilities: Any) -> dict[str, Any]:
        combination = self.combination
        temperatures = tf.constant(combination.temperatures, tf.float32)[None, :, None]
        weights = tf.constant(combination.weights, tf.float32)[None, :, None]
        scaled = tf.math.log(tf.clip_by_value(member_probabilities, EPS, 1.0)) / temperatures
        if combination.mode == "logit":
            combined = tf.nn.softmax(tf.reduce_sum(weights * scaled, axis=1), axis=-1)
        else:
            combined = tf.reduce_sum(weights * tf.nn.softmax(scaled, axis=-1), axis=1)
        classes = member_probabilities.shape[-1]
        votes = tf.reduce_sum(tf.one_hot(tf.argmax(member_probabilities, axis=-1), classes), axis=1)
        # Vote counts differ by whole numbers; adding half the combination (<= 0.5) only breaks ties.
        return {
            "probabilities": combined,
            "class_id": tf.argmax(combined, axis=-1, output_type=tf.int64),
            "hard_vote_class_id": tf.argmax(votes + 0.5 * combined, axis=-1, output_type=tf.int64),
            "member_probabilities": member_probabilities,
        }

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "combination": self.combination.to_dict()}


def build_ensemble(members: list[keras.Model], combination: Combination | None = None) -> keras.Model:
    inputs = image_input()
    for member in members:
        member.trainable = False
    stacked = keras.ops.stack([member(inputs) for member in members], axis=1)
    config = combination.to_dict() if combination else None
    return keras.Model(inputs, Vote(config, name="vote")(stacked), name="ensemble")


def load_member(repo: Path, name: str) -> tuple[keras.Model, int, dict[str, Any]]:
    version = latest_version(repo / name)
    if version is None:
        raise RepositoryError(
            f"{repo / name}: the ensemble needs a trained {name!r}; train it first "
            f"(python -m training --model {name} --repo {repo})"
        )
    version_dir = repo / name / str(version)
    keras_file = version_dir / "assets.extra" / "keras_model.keras"
    if not keras_file.is_file():
        raise RepositoryError(f"{keras_file}: missing; retrain {name!r} with this version of tensorgate")
    return keras.saving.load_model(keras_file, compile=False), version, read_model_card(version_dir)


def _check_members(cards: list[dict[str, Any]], data: Dataset) -> None:
    for name, card in zip(MEMBERS, cards, strict=True):
        trained_on = card["dataset"]["name"]
        if trained_on != data.name or card.get("labels") != list(data.class_names):
            raise RepositoryError(f"{name} was trained on {trained_on} with other classes, not {data.name}; retrain it")
        seed = card["dataset"].get("validation_seed", card.get("training", {}).get("seed"))
        if seed != data.seed:
            raise RepositoryError(
                f"{name} was trained with validation split seed {seed}, not {data.seed}: the ensemble would be "
                f"fitted on images {name} trained on; pass --seed {seed} or retrain {name}"
            )


def _predict_members(members: list[keras.Model], images: np.ndarray) -> np.ndarray:
    batch = images[..., None].astype(np.float32)
    return np.stack([member.predict(batch, batch_size=500, verbose=0) for member in members], axis=1)


def train_ensemble(data: Dataset, repo: Path, seed: int, test_size: int | None) -> TrainResult:
    started = time.monotonic()
    commit = git_commit()  # the code that trains, not whatever is checked out when the run ends
    loaded = [load_member(repo, name) for name in MEMBERS]
    cards = [card for _, _, card in loaded]
    _check_members(cards, data)
    members = [member for member, _, _ in loaded]
    x_test, y_test = data.x_test, data.y_test
    if test_size:
        x_test, y_test = subset(x_test, y_test, test_size, seed)
    print(f"[ensemble] fitting temperatures and weights on {len(data.x_val):,} validation images", flush=True)
    validation = _predict_members(members, data.x_val)
    combination, fit = fit_combination(validation, data.y_val)
    model = build_ensemble(members, combination)
    outputs = model.predict(x_test[..., None].astype(np.float32), batch_size=500, verbose=0)
    test_accuracy = float((outputs["class_id"] == y_test).mean())
    hard_accuracy = float((outputs["hard_vote_class_id"] == y_test).mean())
    member_probabilities = outputs["member_probabilities"]
    plain = member_probabilities.mean(axis=1)
    member_accuracy = {
        name: float((member_probabilities[:, index].argmax(-1) == y_test).mean()) for index, name in enumerate(MEMBERS)
    }
    card: dict[str, Any] = {
        "name": "ensemble",
        "kind": "ensemble",
        "members": [
            {"name": name, "version": version, "temperature": temperature, "weight": weight}
            for name, (_, version, _), temperature, weight in zip(
                MEMBERS, loaded, combination.temperatures, combination.weights, strict=True
            )
        ],
        "combination": {
            **combination.to_dict(),
            "members": list(MEMBERS),
            "clip": EPS,
            "fitted_on": f"validation split ({len(data.x_val):,} images, seed {data.seed})",
            "validation": fit,
            "formula": (
                "softmax(sum_m weight_m * log(max(p_m, clip)) / temperature_m)"
                if combination.mode == "logit"
                else "sum_m weight_m * softmax(log(max(p_m, clip)) / temperature_m)"
            ),
        },
        "dataset": {
            "name": data.name,
            "directory": str(data.directory),
            "validation_images": len(data.x_val),
            "test_images": len(x_test),
            "validation_seed": data.seed,
        },
        "input_contract": input_contract(data.classes),
        "extra_outputs": {
            "hard_vote_class_id": "int64 [-1]",
            "member_probabilities": f"float32 [-1, {len(MEMBERS)}, {data.classes}]",
        },
        "labels": list(data.class_names),
        "metrics": {
            "test_accuracy": test_accuracy,
            "hard_vote_test_accuracy": hard_accuracy,
            "equal_weight_test_accuracy": float((plain.argmax(axis=1) == y_test).mean()),
            "member_test_accuracy": member_accuracy,
        },
        "training": {"seed": seed, "seconds": round(time.monotonic() - started, 1)},
        "versions": library_versions(),
        "git_commit": commit,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with new_version(repo, "ensemble") as (version, staging):
        card["version"] = version
        write_savedmodel(model, staging, list(data.class_names), card)
    seconds = time.monotonic() - started
    best = max(member_accuracy.values())
    weights = ", ".join(
        f"{name} T={t:.2f} w={w:.2f}"
        for name, t, w in zip(MEMBERS, combination.temperatures, combination.weights, strict=True)
    )
    print(
        f"[ensemble] {combination.mode} combination ({weights}): test accuracy {test_accuracy:.4f}, hard vote "
        f"{hard_accuracy:.4f}, best member {best:.4f} on {len(x_test):,} images; "
        f"wrote {repo / 'ensemble' / str(version)} in {duration(seconds)}",
        flush=True,
    )
    return TrainResult("ensemble", version, repo / "ensemble" / str(version), test_accuracy, len(x_test), seconds)
