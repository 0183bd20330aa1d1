"""``python -m export``: convert the latest SavedModel of each model into its variants, write TF
Serving's deployment files and the parity and speed report. Exit status 1 when anything failed."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from export import configs, report
from export.exporter import Exporter
from export.source import find_models, load_images
from export.variants import FORMATS, ExportError, parse_formats
from training.data import DatasetError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path(os.environ.get("TENSORGATE_REPO", "models")))
    parser.add_argument("--models", nargs="+", help="servables to export (default: every SavedModel in --repo)")
    parser.add_argument("--formats", nargs="+", help=f"default: all of {', '.join(FORMATS)}")
    parser.add_argument("--base-path", help="base_path prefix in the configs (default: --repo, absolute)")
    parser.add_argument("--data-dir", type=Path, help="IDX files (default: as python -m training finds them)")
    parser.add_argument("--test-size", type=int, default=0, help="test images measured (0: all 10,000)")
    parser.add_argument("--calibration-size", type=int, default=500, help="int8 representative set (train split)")
    parser.add_argument("--latency-runs", type=int, default=300, help="batch-1 calls per servable")
    parser.add_argument("--throughput-runs", type=int, default=20, help="batch-64 calls per servable")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo: Path = args.repo.resolve()
    try:
        formats = parse_formats(args.formats)
        names = args.models or find_models(repo)
    except ExportError as error:
        print(f"export: {error}", file=sys.stderr)
        return 2
    try:
        images = load_images(args.test_size, args.calibration_size, args.data_dir)
    except DatasetError as error:
        print(f"export: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    exporter = Exporter(repo, images, args.latency_runs, args.throughput_runs)
    try:
        for name in names:
            exporter.export_model(name, formats)
    finally:
        exporter.close()

    base_path = args.base_path or str(repo)
    savedmodels, servables = exporter.servables()
    changed = configs.write_all(repo, savedmodels, servables, base_path)
    meta = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {exporter.gpu_note}",
        "test_images": len(images.test),
        "calibration_images": len(images.calibration),
        "batch1_runs": args.latency_runs,
        "throughput_runs": args.throughput_runs,
        "runtimes": "TensorFlow for SavedModels, LiteRT/XNNPACK with 1 thread for TFLite, onnxruntime CPU",
        "versions": exporter.library_versions(),
        "seconds": round(time.monotonic() - started, 1),
    }
    for row in exporter.rows:
        row.measured = meta["created"]
    rows = exporter.rows + report.previous_rows(repo, exporter.rows)
    written = report.write(repo, sorted(rows, key=exporter.order), meta)
    for path in changed:
        print(f"export: wrote {path}")
    print(f"export: report {written[1]} ({len(exporter.failures)} failed, {meta['seconds']} s)")
    for failure in exporter.failures:
        print(f"export: FAILED {failure}", file=sys.stderr)
    return 1 if exporter.failures else 0
