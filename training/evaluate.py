"""python -m training.evaluate: test-set report for the latest version of every model in a repository.

Writes report.json, report.md and PNG plots (a confusion matrix per model, training curves) with, per
model, the accuracy on the whole test set and its 95% confidence interval (Wilson), per-class accuracy,
the expected calibration error before and after temperature scaling (the temperature fitted on the
validation split, never on the test set), and for the ensemble its gain over its best member with
McNemar's exact test of the difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.calibration import (
    expected_calibration_error,
    fit_temperature,
    log_loss,
    mcnemar,
    scale_temperature,
    wilson_interval,
)
from training.data import DATASETS, DatasetError
from training.repository import RepositoryError, check_repo, latest_version

MODELS = ("cnn", "lstm", "transformer", "ensemble")
MEMBERS = MODELS[:3]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def accuracy_entry(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    correct = int((predicted == labels).sum())
    low, high = wilson_interval(correct, len(labels))
    return {"accuracy": correct / len(labels), "ci95": [low, high]}


def calibration_entry(
    test: np.ndarray, y_test: np.ndarray, validation: np.ndarray, y_val: np.ndarray
) -> dict[str, Any]:
    temperature = fit_temperature(validation, y_val)
    scaled = scale_temperature(test, temperature)
    return {
        "ece": expected_calibration_error(test, y_test),
        "log_loss": log_loss(test, y_test),
        "temperature": temperature,
        "ece_scaled": expected_calibration_error(scaled, y_test),
        "log_loss_scaled": log_loss(scaled, y_test),
    }


def _run(serve: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), 500):
        batch = serve(image=tf.constant(images[start : start + 500, ..., None].astype(np.float32)))
        for key, value in batch.items():
            outputs.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(parts) for key, parts in outputs.items()}


def evaluate(
    repo: Path, dataset: str = "fashion_mnist", data_dir: Path | None = None, labels_file: Path | None = None
) -> dict[str, Any]:
    import tensorflow as tf

    from training.data import load_dataset
    from training.savedmodel import read_model_card

    check_repo(repo)
    present = [name for name in MODELS if latest_version(repo / name) is not None]
    if not present:
        raise RepositoryError(f"{repo}: no trained models (cnn, lstm, transformer, ensemble); run python -m training")
    cards = {name: read_model_card(repo / name / str(latest_version(repo / name))) for name in present}
    seed = int(next(iter(cards.values())).get("dataset", {}).get("validation_seed", 0))
    data = load_dataset(dataset, data_dir, seed=seed, labels_file=labels_file)
    report: dict[str, Any] = {
        "dataset": dataset,
        "test_images": len(data.x_test),
        "validation_images": len(data.x_val),
        "validation_seed": seed,
        "labels": list(data.class_names),
    }
    models: dict[str, Any] = {}
    correct: dict[str, np.ndarray] = {}
    for name in present:
        version = latest_version(repo / name)
        card = cards[name]
        serve = tf.saved_model.load(str(repo / name / str(version))).signatures["serving_default"]
        test, validation = _run(serve, data.x_test), _run(serve, data.x_val)
        predicted = test["class_id"]
        correct[name] = predicted == data.y_test
        matrix = confusion_matrix(data.y_test, predicted, data.classes)
        entry: dict[str, Any] = {
            "version": version,
            "test_accuracy": float(correct[name].mean()),
            "test_accuracy_ci95": accuracy_entry(predicted, data.y_test)["ci95"],
            "calibration": {
                **calibration_entry(test["probabilities"], data.y_test, validation["probabilities"], data.y_val),
                # folded into the member's last layer when it was trained (None: an older model, or the ensemble)
                "served_temperature": card.get("calibration", {}).get("temperature"),
            },
            "per_class_accuracy": {
                label: float(matrix[index, index] / max(1, matrix[index].sum()))
                for index, label in enumerate(data.class_names)
            },
            "confusion_matrix": matrix.tolist(),
            "training_seconds": card.get("training", {}).get("seconds"),
            "epochs": len(card.get("history", [])),
            "history": card.get("history", []),
            "profile": _profile_name(card),
        }
        if "hard_vote_class_id" in test:
            entry["hard_vote"] = accuracy_entry(test["hard_vote_class_id"], data.y_test)
            plain_test = test["member_probabilities"].mean(axis=1)
            plain_val = validation["member_probabilities"].mean(axis=1)
            entry["equal_weight_soft_vote"] = {
                **accuracy_entry(plain_test.argmax(axis=1), data.y_test),
                "calibration": calibration_entry(plain_test, data.y_test, plain_val, data.y_val),
            }
            entry["combination"] = card.get("combination")
        models[name] = entry
    report["models"] = models
    members = [name for name in MEMBERS if name in models]
    if "ensemble" in models and members:
        best = max(members, key=lambda name: models[name]["test_accuracy"])
        report["ensemble_vs_best_member"] = {
            "best_member": best,
            "gain": models["ensemble"]["test_accuracy"] - models[best]["test_accuracy"],
            "mcnemar": mcnemar(correct["ensemble"], correct[best]),
        }
    report["total_training_seconds"] = sum(m["training_seconds"] or 0 for m in models.values())
    return report


def _profile_name(card: dict[str, Any]) -> str | None:
    profile = card.get("training", {}).get("profile")
    return profile.get("name") if isinstance(profile, dict) else profile


def main(argv: list[str] | None = None) -> int:
    from training.report import write_report

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: <repo>/evaluation)")
    parser.add_argument("--dataset", default="fashion_mnist", choices=DATASETS)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--labels", type=Path, default=None, help="--dataset idx: class names, one per line")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.repo, args.dataset, args.data_dir, args.labels)
    except (DatasetError, RepositoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in write_report(report, args.out or args.repo / "evaluation"):
        print(f"wrote {path}")
    for name, entry in report["models"].items():
        low, high = entry["test_accuracy_ci95"]
        accuracy = entry["test_accuracy"]
        print(f"{name:12s} v{entry['version']}  test accuracy {accuracy:.4f} (95% CI {low:.4f}-{high:.4f})")
    if "ensemble_vs_best_member" in report:
        versus = report["ensemble_vs_best_member"]
        print(
            f"ensemble vs {versus['best_member']}: {versus['gain'] * 100:+.2f} points, "
            f"McNemar p = {versus['mcnemar']['p_value']:.3g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
