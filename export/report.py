"""The export report: ``export_report.json``, ``export_report.md`` and two plots in the repository root."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from export.configs import write_atomic

JSON_FILE = "export_report.json"
MARKDOWN_FILE = "export_report.md"
ACCURACY_PLOT = "export_accuracy_latency.png"
SIZE_PLOT = "export_sizes.png"
AGREEMENT_THRESHOLD = 0.99


@dataclass
class Row:
    """One servable: the SavedModel itself (format ``savedmodel``) or one of its variants."""

    model: str
    format: str
    servable: str
    version: int
    status: str  # converted | verified | failed | skipped
    runtime: str = ""
    reason: str = ""
    size_bytes: int | None = None
    size_ratio: float | None = None  # against the SavedModel's variables
    accuracy: float | None = None
    accuracy_delta: float | None = None  # points against the SavedModel
    agreement: float | None = None
    max_abs_diff: float | None = None
    speed: dict[str, Any] = field(default_factory=dict)
    flagged: str = ""  # why this variant is left out of the serving config
    measured: str = ""  # when: this run, or an earlier one for servables this run did not examine

    @property
    def servable_ok(self) -> bool:
        return self.status in ("converted", "verified") and not self.flagged


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    lines = [
        "# Export report",
        "",
        f"Measured {meta['created']} on {meta['machine']}; {meta['test_images']:,} test images; "
        f"latency over {meta['batch1_runs']} batch-1 calls (p50 / p99), throughput over "
        f"{meta['throughput_runs']} calls at batch 64; each servable through the model server's runtime "
        f"({meta['runtimes']}).",
        "",
        "| servable | status | accuracy | Δ points | agreement | max abs Δp | size | size / variables "
        "| p50 ms | p99 ms | img/s @64 | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        note = row.flagged or row.reason
        lines.append(
            f"| {row.servable} | {row.status} | {_pct(row.accuracy)} | {_num(row.accuracy_delta, '+.2f')} "
            f"| {_pct(row.agreement)} | {_num(row.max_abs_diff, '.2e')} "
            f"| {'' if row.size_bytes is None else f'{row.size_bytes / 1e6:.2f} MB'} "
            f"| {_num(row.size_ratio, '.2f')} | {_num(row.speed.get('p50_ms'), '.2f')} "
            f"| {_num(row.speed.get('p99_ms'), '.2f')} | {_num(row.speed.get('throughput_per_s'), ',.0f')} "
            f"| {note} |"
        )
    lines += goals(rows)
    flagged = [row for row in rows if row.flagged]
    failed = [row for row in rows if row.status in ("failed", "skipped")]
    if flagged:
        lines += ["", "## Left out of modelserver.config", ""]
        lines += [f"- `{row.servable}`: {row.flagged}" for row in flagged]
    if failed:
        lines += ["", "## Not produced", ""]
        lines += [f"- `{row.servable}` ({row.status}): {row.reason}" for row in failed]
    return "\n".join(lines) + "\n"


def goals(rows: list[Row]) -> list[str]:
    """Issue 3's goals, checked against this report's numbers."""
    by_name = {row.servable: row for row in rows}
    lines = ["", "## Goals", ""]

    def check(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    cnn, int8 = by_name.get("cnn"), by_name.get("cnn_int8")
    if cnn and int8 and int8.accuracy_delta is not None and cnn.speed and int8.speed:
        latency = int8.speed["p50_ms"] / cnn.speed["p50_ms"]
        lines.append(
            f"- cnn int8: accuracy {int8.accuracy_delta:+.2f} points (within 0.3: "
            f"{check(abs(int8.accuracy_delta) <= 0.3)}), size {int8.size_ratio:.2f}x (<= 0.3x: "
            f"{check((int8.size_ratio or 1) <= 0.3)}), batch-1 p50 {latency:.2f}x the SavedModel's "
            f"(<= 0.6x: {check(latency <= 0.6)})"
        )
    lstm = by_name.get("lstm_dynamic")
    if lstm and lstm.accuracy_delta is not None:
        lines.append(
            f"- lstm dynamic: accuracy {lstm.accuracy_delta:+.2f} points (within 0.3: "
            f"{check(abs(lstm.accuracy_delta) <= 0.3)})"
        )
    kept = [r for r in rows if r.model == "transformer" and r.format != "savedmodel" and r.accuracy is not None]
    if kept:
        lines.append(
            "- transformer: "
            + "; ".join(
                f"{r.format} {r.accuracy_delta:+.2f} points, agreement {_pct(r.agreement)}"
                f" ({'passes' if (r.agreement or 0) >= AGREEMENT_THRESHOLD else 'fails'} the 99% agreement bar)"
                for r in kept
            )
        )
    onnx = [r for r in rows if r.format == "onnx" and r.agreement is not None]
    if onnx:
        worst = min(onnx, key=lambda r: r.agreement or 0)
        lines.append(
            f"- onnx agreement >= 99.9% for every model: {check(all((r.agreement or 0) >= 0.999 for r in onnx))} "
            f"(lowest {worst.servable} {_pct(worst.agreement)})"
        )
    return lines if len(lines) > 3 else []


def plots(rows: list[Row], repo: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in rows if row.accuracy is not None and row.speed]
    models = list(dict.fromkeys(row.model for row in rows))
    markers = {"savedmodel": "o", "dynamic": "s", "fp16": "^", "int8": "v", "onnx": "D", "trt": "*"}
    figure, axes = plt.subplots(figsize=(8, 5))
    for index, model in enumerate(models):
        for row in (r for r in measured if r.model == model):
            axes.scatter(
                row.speed["p50_ms"],
                100 * (row.accuracy or 0),
                color=f"C{index}",
                marker=markers.get(row.format, "o"),
                label=row.servable,
            )
    axes.set_xscale("log")
    axes.set_xlabel("batch-1 latency p50 (ms, log)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Accuracy against batch-1 latency")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    accuracy_path = repo / ACCURACY_PLOT
    _save(figure, accuracy_path)
    plt.close(figure)

    sized = [row for row in rows if row.size_bytes]
    figure, axes = plt.subplots(figsize=(9, 5))
    axes.bar(
        [row.servable for row in sized],
        [(row.size_bytes or 0) / 1e6 for row in sized],
        color=[f"C{models.index(row.model)}" for row in sized],
    )
    axes.set_ylabel("MB (SavedModel: variables)")
    axes.set_title("Size on disk")
    axes.tick_params(axis="x", rotation=70, labelsize=7)
    figure.tight_layout()
    size_path = repo / SIZE_PLOT
    _save(figure, size_path)
    plt.close(figure)
    return [accuracy_path, size_path]


def previous_rows(repo: Path, current: list[Row]) -> list[Row]:
    """Rows of the last report for servables this run did not examine (e.g. ``--models cnn``), so the
    report and the flags it carries keep covering the whole repository."""
    try:
        document = json.loads((repo / JSON_FILE).read_text(encoding="utf-8"))
        created = document["meta"]["created"]
        rows = [Row(**{"measured": created, **row}) for row in document["servables"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    seen = {row.servable for row in current}
    return [row for row in rows if row.servable not in seen and (repo / row.model).is_dir()]


def write(repo: Path, rows: list[Row], meta: dict[str, Any]) -> list[Path]:
    document = {"meta": meta, "servables": [asdict(row) for row in rows]}
    json_path, markdown_path = repo / JSON_FILE, repo / MARKDOWN_FILE
    write_atomic(json_path, json.dumps(document, indent=2) + "\n")
    write_atomic(markdown_path, markdown(rows, meta))
    return [json_path, markdown_path, *plots(rows, repo)]


def directory_size(path: Path) -> int:
    return sum(os.path.getsize(item) for item in path.rglob("*") if item.is_file())


def _save(figure: Any, path: Path) -> None:
    staging = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    figure.savefig(staging, dpi=120)
    os.replace(staging, path)
