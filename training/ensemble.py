"""The voting ensemble, built from the latest trained members (never retrained).

Outputs: ``probabilities`` (soft vote: mean of the members'), ``class_id`` (its argmax),
``hard_vote_class_id`` (majority of the members' argmaxes, ties broken by the soft vote) and
``member_probabilities`` [batch, members, 10].
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

import training.models.transformer  # noqa: F401  (registers the custom layers for loading)
from training.data import Dataset, subset
from training.models.registry import TRAINABLE_NAMES, image_input
from training.repository import RepositoryError, latest_version, new_version
from training.savedmodel import read_model_card, write_savedmodel
from training.train import INPUT_CONTRACT, TrainResult, git_commit, library_versions

MEMBERS = TRAINABLE_NAMES


@keras.saving.register_keras_serializable(package="tensorgate")
class Vote(layers.Layer):
    """Stacked member probabilities [batch, members, classes] -> the ensemble's outputs."""

    def call(self, member_probabilities: Any) -> dict[str, Any]:
        soft = ops.mean(member_probabilities, axis=1)
        classes = member_probabilities.shape[-1]
        votes = ops.sum(ops.one_hot(ops.argmax(member_probabilities, axis=-1), classes), axis=1)
        # Vote counts differ by whole numbers; adding half the soft vote (<= 0.5) only breaks ties.
        hard = ops.argmax(votes + 0.5 * soft, axis=-1)
        return {
            "probabilities": soft,
            "class_id": ops.cast(ops.argmax(soft, axis=-1), "int64"),
            "hard_vote_class_id": ops.cast(hard, "int64"),
            "member_probabilities": member_probabilities,
        }


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    inputs = image_input()
    for member in members:
        member.trainable = False
    stacked = ops.stack([member(inputs) for member in members], axis=1)
    return keras.Model(inputs, Vote(name="vote")(stacked), name="ensemble")


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


def train_ensemble(data: Dataset, repo: Path, seed: int, test_size: int | None) -> TrainResult:
    started = time.monotonic()
    commit = git_commit()  # the code that trains, not whatever is checked out when the run ends
    loaded = [load_member(repo, name) for name in MEMBERS]
    cards = [card for _, _, card in loaded]
    datasets = {card["dataset"]["name"] for card in cards}
    if datasets != {data.name}:
        raise RepositoryError(f"members were trained on {sorted(datasets)}, not {data.name}; retrain them")
    model = build_ensemble([member for member, _, _ in loaded])
    x_test, y_test = data.x_test, data.y_test
    if test_size:
        x_test, y_test = subset(x_test, y_test, test_size, seed)
    outputs = model.predict(x_test[..., None].astype(np.float32), batch_size=512, verbose=0)
    test_accuracy = float((outputs["class_id"] == y_test).mean())
    hard_accuracy = float((outputs["hard_vote_class_id"] == y_test).mean())
    member_accuracy = {
        name: float((outputs["member_probabilities"][:, index].argmax(-1) == y_test).mean())
        for index, name in enumerate(MEMBERS)
    }
    seconds = time.monotonic() - started
    card: dict[str, Any] = {
        "name": "ensemble",
        "kind": "ensemble",
        "members": [{"name": name, "version": version} for name, (_, version, _) in zip(MEMBERS, loaded, strict=True)],
        "dataset": {"name": data.name, "directory": str(data.directory), "test_images": len(x_test)},
        "input_contract": INPUT_CONTRACT,
        "extra_outputs": {"hard_vote_class_id": "int64 [-1]", "member_probabilities": "float32 [-1, 3, 10]"},
        "labels": list(data.class_names),
        "metrics": {
            "test_accuracy": test_accuracy,
            "hard_vote_test_accuracy": hard_accuracy,
            "member_test_accuracy": member_accuracy,
        },
        "training": {"seed": seed, "seconds": round(seconds, 1)},
        "versions": library_versions(),
        "git_commit": commit,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with new_version(repo, "ensemble") as (version, staging):
        card["version"] = version
        write_savedmodel(model, staging, list(data.class_names), card)
    best = max(member_accuracy.values())
    print(
        f"[ensemble] soft vote {test_accuracy:.4f}, hard vote {hard_accuracy:.4f}, best member {best:.4f} "
        f"on {len(x_test):,} images; wrote {repo / 'ensemble' / str(version)}",
        flush=True,
    )
    return TrainResult("ensemble", version, repo / "ensemble" / str(version), test_accuracy, len(x_test), seconds)
