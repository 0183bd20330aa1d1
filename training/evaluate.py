"""python -m training.evaluate: test-set report for the latest version of every model in a repository.

Writes report.json, report.md and PNG plots (a confusion matrix per model, training curves) with
accuracy on the full test set, per-class accuracy and the ensemble's gain over its best member.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.data import DATASETS, DatasetError
from training.repository import RepositoryError, check_repo, latest_version

MODELS = ("cnn", "lstm", "transformer", "ensemble")


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def evaluate(repo: Path, dataset: str = "fashion_mnist", data_dir: Path | None = None) -> dict[str, Any]:
    import tensorflow as tf

    from training.data import load_dataset
    from training.savedmodel import read_model_card

    check_repo(repo)
    present = [name for name in MODELS if latest_version(repo / name) is not None]
    if not present:
        raise RepositoryError(f"{repo}: no trained models (cnn, lstm, transformer, ensemble); run python -m training")
    data = load_dataset(dataset, data_dir)
    images = data.x_test[..., None].astype(np.float32)
    report: dict[str, Any] = {"dataset": dataset, "test_images": len(images), "labels": list(data.class_names)}
    models: dict[str, Any] = {}
    for name in present:
        version = latest_version(repo / name)
        version_dir = repo / name / str(version)
        card = read_model_card(version_dir)
        serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        outputs: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(images), 500):
            batch = serve(image=tf.constant(images[start : start + 500]))
            for key, value in batch.items():
                outputs.setdefault(key, []).append(value.numpy())
        merged = {key: np.concatenate(parts) for key, parts in outputs.items()}
        predicted = merged["class_id"]
        matrix = confusion_matrix(data.y_test, predicted)
        entry: dict[str, Any] = {
            "version": version,
            "test_accuracy": float((predicted == data.y_test).mean()),
            "per_class_accuracy": {
                label: float(matrix[index, index] / max(1, matrix[index].sum()))
                for index, label in enumerate(data.class_names)
            },
            "confusion_matrix": matrix.tolist(),
            "training_seconds": card.get("training", {}).get("seconds"),
            "epochs": len(card.get("history", [])),
            "history": card.get("history", []),
            "profile": card.get("training", {}).get("profile", {}).get("name"),
        }
        if "hard_vote_class_id" in merged:
            entry["hard_vote_test_accuracy"] = float((merged["hard_vote_class_id"] == data.y_test).mean())
        models[name] = entry
    report["models"] = models
    members = [models[name]["test_accuracy"] for name in ("cnn", "lstm", "transformer") if name in models]
    if "ensemble" in models and members:
        report["ensemble_gain_over_best_member"] = models["ensemble"]["test_accuracy"] - max(members)
    report["total_training_seconds"] = sum(m["training_seconds"] or 0 for m in models.values())
    return report


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written = [out / "report.json", out / "report.md"]
    written += _plots(report, out)
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    return written


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Evaluation on the {report['dataset']} test set ({report['test_images']:,} images)",
        "",
        "| model | version | profile | epochs | test accuracy | training time |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["models"].items():
        seconds = entry["training_seconds"]
        minutes = f"{seconds / 60:.1f} min" if seconds else "-"
        lines.append(
            f"| {name} | {entry['version']} | {entry['profile'] or '-'} | {entry['epochs'] or '-'} | "
            f"{entry['test_accuracy']:.4f} | {minutes} |"
        )
    if "ensemble" in report["models"] and "hard_vote_test_accuracy" in report["models"]["ensemble"]:
        lines += ["", f"Ensemble hard vote: {report['models']['ensemble']['hard_vote_test_accuracy']:.4f}."]
    if "ensemble_gain_over_best_member" in report:
        lines.append(
            "Soft-vote ensemble gain over its best member: "
            f"{report['ensemble_gain_over_best_member'] * 100:+.2f} points."
        )
    lines.append(f"Total training time: {report['total_training_seconds'] / 60:.1f} min.")
    lines += ["", "## Per-class accuracy", "", "| class | " + " | ".join(report["models"]) + " |"]
    lines.append("|---|" + "---|" * len(report["models"]))
    for label in report["labels"]:
        cells = " | ".join(f"{m['per_class_accuracy'][label]:.3f}" for m in report["models"].values())
        lines.append(f"| {label} | {cells} |")
    lines += ["", "Plots: `confusion_<model>.png`, `training_curves.png`.", ""]
    return "\n".join(lines)


def _plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = report["labels"]
    for name, entry in report["models"].items():
        matrix = np.array(entry["confusion_matrix"])
        figure, axis = plt.subplots(figsize=(7, 6))
        axis.imshow(matrix, cmap="Blues")
        axis.set_xticks(range(10), labels, rotation=45, ha="right")
        axis.set_yticks(range(10), labels)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{name} v{entry['version']}: accuracy {entry['test_accuracy']:.4f}")
        for (row, column), count in np.ndenumerate(matrix):
            axis.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > matrix.max() / 2 else "black",
            )
        figure.tight_layout()
        path = out / f"confusion_{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    curves = {name: entry["history"] for name, entry in report["models"].items() if entry["history"]}
    if curves:
        figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
        for name, history in curves.items():
            epochs = range(1, len(history) + 1)
            loss_axis.plot(epochs, [row.get("val_loss") for row in history], label=f"{name} val")
            loss_axis.plot(epochs, [row.get("loss") for row in history], "--", alpha=0.5, label=f"{name} train")
            accuracy_axis.plot(epochs, [row.get("val_accuracy") for row in history], label=f"{name} val")
            accuracy_axis.plot(epochs, [row.get("accuracy") for row in history], "--", alpha=0.5, label=f"{name} train")
        loss_axis.set(title="loss", xlabel="epoch")
        accuracy_axis.set(title="accuracy", xlabel="epoch")
        accuracy_axis.legend(fontsize=7)
        figure.tight_layout()
        path = out / "training_curves.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: <repo>/evaluation)")
    parser.add_argument("--dataset", default="fashion_mnist", choices=DATASETS)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.repo, args.dataset, args.data_dir)
    except (DatasetError, RepositoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in write_report(report, args.out or args.repo / "evaluation"):
        print(f"wrote {path}")
    for name, entry in report["models"].items():
        print(f"{name:12s} v{entry['version']}  test accuracy {entry['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
