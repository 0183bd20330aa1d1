"""The evaluation report's files: report.json, report.md, a confusion matrix per model, training curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written = [out / "report.json", out / "report.md"]
    written += _plots(report, out)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return written


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def _interval(interval: list[float]) -> str:
    return f"{interval[0] * 100:.2f}-{interval[1] * 100:.2f}%"


def markdown(report: dict[str, Any]) -> str:
    models = report["models"]
    lines = [
        f"# Evaluation on the {report['dataset']} test set ({report['test_images']:,} images)",
        "",
        "| model | version | profile | epochs | test accuracy | 95% CI | training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in models.items():
        seconds = entry["training_seconds"]
        minutes = f"{seconds / 60:.1f} min" if seconds else "-"
        lines.append(
            f"| {name} | {entry['version']} | {entry['profile'] or '-'} | {entry['epochs'] or '-'} | "
            f"{_percent(entry['test_accuracy'])} | {_interval(entry['test_accuracy_ci95'])} | {minutes} |"
        )
    ensemble = models.get("ensemble")
    if ensemble and "hard_vote" in ensemble:
        plain = ensemble["equal_weight_soft_vote"]
        lines += [
            "",
            f"Ensemble hard vote: {_percent(ensemble['hard_vote']['accuracy'])} "
            f"({_interval(ensemble['hard_vote']['ci95'])}); the equal-weight soft vote (mean of the members' "
            f"probabilities, the old contract): {_percent(plain['accuracy'])} ({_interval(plain['ci95'])}).",
        ]
        combination = ensemble.get("combination")
        if combination:
            members = ", ".join(
                f"{name} T={t:.3f} w={w:.3f}"
                for name, t, w in zip(
                    combination["members"], combination["temperatures"], combination["weights"], strict=True
                )
            )
            lines.append(
                f"Combination ({combination['mode']}, fitted on the {combination['fitted_on']}): {members}; "
                f"`{combination['formula']}`."
            )
    if "ensemble_vs_best_member" in report:
        versus = report["ensemble_vs_best_member"]
        test = versus["mcnemar"]
        lines.append(
            f"Ensemble gain over its best member ({versus['best_member']}): {versus['gain'] * 100:+.2f} points; "
            f"McNemar's exact test: ensemble alone right on {test['only_first']} images, {versus['best_member']} "
            f"alone right on {test['only_second']}, p = {test['p_value']:.3g}."
        )
    lines.append(f"Total training time: {report['total_training_seconds'] / 60:.1f} min.")
    lines += [
        "",
        "## Calibration",
        "",
        f"Expected calibration error (15 equal-width confidence bins) and log-loss on the test set, before and after "
        f"temperature scaling with a temperature fitted on the validation split ({report['validation_images']:,} "
        f"images, seed {report['validation_seed']}). Members trained since 2026-12-03 serve calibrated "
        "probabilities: 'served T' is the temperature folded into their last layer at training (model card, "
        "`calibration`), and every other column is of the probabilities as served.",
        "",
        "| model | served T | ECE | log-loss | temperature | ECE scaled | log-loss scaled |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [(name, entry["calibration"]) for name, entry in models.items()]
    if ensemble and "equal_weight_soft_vote" in ensemble:
        rows.append(("equal-weight soft vote", ensemble["equal_weight_soft_vote"]["calibration"]))
    for name, calibration in rows:
        lines.append(
            f"| {name} | {_temperature(calibration.get('served_temperature'))} | {calibration['ece']:.4f} | "
            f"{calibration['log_loss']:.4f} | {calibration['temperature']:.3f} | "
            f"{calibration['ece_scaled']:.4f} | {calibration['log_loss_scaled']:.4f} |"
        )
    lines += ["", "## Per-class accuracy", "", "| class | " + " | ".join(models) + " |"]
    lines.append("|---|" + "---|" * len(models))
    for label in report["labels"]:
        cells = " | ".join(f"{m['per_class_accuracy'][label]:.3f}" for m in models.values())
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
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.set_yticks(range(len(labels)), labels)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{name} v{entry['version']}: accuracy {entry['test_accuracy']:.4f}")
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if count > matrix.max() / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
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


def _temperature(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
