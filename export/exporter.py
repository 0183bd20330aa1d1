"""One export run: for each model, its SavedModel measured, then each variant converted (or verified
when its version exists), checked against the contract and measured through its runtime."""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from pathlib import Path

from export import measure, onnx, tensorrt, tflite, warmup
from export.configs import Servable
from export.report import AGREEMENT_THRESHOLD, JSON_FILE, Row, directory_size
from export.source import Images, Source, find_models, source
from export.variants import (
    FORMATS,
    SAVEDMODEL_RUNTIME,
    ExportError,
    Skipped,
    check_contract,
    contract,
    copy_metadata,
    load,
    variant_name,
)
from serving.modelserver.runtimes.base import Model
from training.repository import _remove_stale_staging as remove_stale_staging
from training.repository import staged_directory, versions


class Exporter:
    def __init__(self, repo: Path, images: Images, latency_runs: int, throughput_runs: int) -> None:
        self.repo = repo
        self.images = images
        self.latency_runs = latency_runs
        self.throughput_runs = throughput_runs
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.trt_reason = tensorrt.unavailable_reason()
        self.gpu_note = "GPU visible" if tensorrt.gpu_visible() else "no GPU"
        self._trt_said = False
        self._scratch = tempfile.TemporaryDirectory(prefix="tensorgate-export-")
        self.scratch = Path(self._scratch.name)

    def close(self) -> None:
        self._scratch.cleanup()

    def export_model(self, name: str, formats: list[str]) -> None:
        started = time.monotonic()
        try:
            found = source(self.repo, name)
            model = load("tensorflow", found.path)
            expected = contract(model)
        except ExportError as error:
            self._fail(Row(name, "savedmodel", name, 0, "failed", SAVEDMODEL_RUNTIME, str(error)))
            return
        try:
            for version in found.versions:
                version_dir = self.repo / name / str(version)
                if (version_dir / "saved_model.pb").is_file() and warmup.ensure(version_dir, name, self.images.test):
                    print(f"export: {name} v{version}: wrote {warmup.WARMUP_FILE}", flush=True)
            reference = measure.predict_all(model, self.images.test)
            row = Row(name, "savedmodel", name, found.version, "source", SAVEDMODEL_RUNTIME)
            row.size_bytes = directory_size(found.path / "variables")
            row.size_ratio = 1.0
            row.accuracy = float((reference.class_id == self.images.test_labels).mean())
            row.accuracy_delta, row.agreement, row.max_abs_diff = 0.0, 1.0, 0.0
            row.speed = measure.speed(model, self.images.test, self.latency_runs, self.throughput_runs).to_dict()
        except Exception as error:  # ExportError, or the runtime refusing the test images
            cause = str(error) if isinstance(error, ExportError) else f"{type(error).__name__}: {_first_line(error)}"
            self._fail(Row(name, "savedmodel", name, found.version, "failed", SAVEDMODEL_RUNTIME, cause))
            return
        finally:
            model.close()
        self.rows.append(row)
        print(
            f"export: {name} v{found.version}: SavedModel accuracy {row.accuracy:.2%} "
            f"({time.monotonic() - started:.1f} s)",
            flush=True,
        )
        for format_name in formats:
            self.export_variant(found, format_name, expected, reference, row)

    def export_variant(
        self,
        found: Source,
        format_name: str,
        expected: dict[str, dict[str, str]],
        reference: measure.Outputs,
        baseline: Row,
    ) -> None:
        started = time.monotonic()
        servable = variant_name(found.name, format_name)
        final = self.repo / servable / str(found.version)
        row = Row(found.name, format_name, servable, found.version, "converted", FORMATS[format_name].runtime)
        try:
            if final.exists():
                row.status = "verified"
            else:
                if format_name == "trt" and self.trt_reason is not None:
                    raise Skipped(self.trt_reason)
                if final.parent.is_dir():  # what a killed export left (servers ignore it: not a number)
                    remove_stale_staging(final.parent)
                try:
                    with staged_directory(final) as staging:
                        self._convert(found, format_name, staging)
                        copy_metadata(found.path, staging, format_name, found.version)
                        staged = _load_runnable(format_name, staging)
                        if staged is not None:
                            try:
                                check_contract(staged, expected)
                            finally:
                                staged.close()
                finally:
                    if final.parent.is_dir() and not any(final.parent.iterdir()):
                        final.parent.rmdir()
            model = _load_runnable(format_name, final)
            if model is None:
                row.flagged = f"not measured: {TRT_NOT_RUNNABLE}"
                self.rows.append(row)
                print(f"export: {servable} v{found.version}: {row.status}; {row.flagged}", flush=True)
                return
            try:
                check_contract(model, expected)
                outputs = measure.predict_all(model, self.images.test)
                row.speed = measure.speed(model, self.images.test, self.latency_runs, self.throughput_runs).to_dict()
            finally:
                model.close()
        except Skipped as error:
            row.status, row.reason = "skipped", str(error)
            self.rows.append(row)
            if not self._trt_said:
                print(f"export: {format_name} skipped: {error}", flush=True)
                self._trt_said = True
            return
        except ExportError as error:
            row.status, row.reason = "failed", str(error)
            self._fail(row)
            return
        except Exception as error:  # an unexpected failure of one conversion never stops the others
            if os.environ.get("TENSORGATE_EXPORT_TRACEBACK"):
                traceback.print_exc()
            row.status, row.reason = (
                "failed",
                f"{type(error).__name__}: {_first_line(error)}",
            )
            self._fail(row)
            return
        parity = measure.parity(outputs, reference, self.images.test_labels)
        row.accuracy, row.agreement, row.max_abs_diff = parity["accuracy"], parity["agreement"], parity["max_abs_diff"]
        row.accuracy_delta = 100 * (row.accuracy - (baseline.accuracy or 0.0))
        model_file = next(
            (path for path in (final / FORMATS[format_name].filename, final / "saved_model.pb") if path.is_file()), None
        )
        row.size_bytes = model_file.stat().st_size if model_file is not None else directory_size(final)
        row.size_ratio = row.size_bytes / baseline.size_bytes if baseline.size_bytes else None
        if row.agreement < AGREEMENT_THRESHOLD:
            row.flagged = (
                f"top-1 agreement {row.agreement:.2%} with the SavedModel is under {AGREEMENT_THRESHOLD:.0%} "
                f"on {len(self.images.test):,} test images"
            )
        self.rows.append(row)
        print(
            f"export: {servable} v{found.version}: {row.status} in {time.monotonic() - started:.1f} s, "
            f"{row.size_bytes / 1e6:.2f} MB, agreement {row.agreement:.2%}, accuracy {row.accuracy:.2%} "
            f"({row.accuracy_delta:+.2f}){' FLAGGED' if row.flagged else ''}",
            flush=True,
        )

    def _convert(self, found: Source, format_name: str, staging: Path) -> None:
        if format_name in tflite.TFLITE_FORMATS:
            tflite.write(found.path, format_name, self.images.calibration, staging, self.scratch)
        elif format_name == "onnx":
            onnx.write(self._onnx_source(found), staging)
        elif format_name == "trt":
            if tensorrt.tf_trt_available():
                tensorrt.write_tf_trt(found.path, staging)
                return
            onnx_model = self.repo / variant_name(found.name, "onnx") / str(found.version) / "model.onnx"
            if onnx_model.is_file():
                tensorrt.write(onnx_model, self.images.calibration, staging)
                return
            with tempfile.TemporaryDirectory(prefix="tensorgate-onnx-") as scratch:
                onnx.write(self._onnx_source(found), Path(scratch))
                tensorrt.write(Path(scratch) / "model.onnx", self.images.calibration, staging)
        else:
            raise ExportError(f"unknown format {format_name!r}")

    def _onnx_source(self, found: Source) -> Path:
        """The ensemble's own vote uses Keras' argmax, which tf2onnx turns into Bitcast (not ONNX)."""
        return tflite.rebuilt(found.path, self.scratch) if tflite.is_ensemble(found.path) else found.path

    def _fail(self, row: Row) -> None:
        self.rows.append(row)
        line = f"{row.model} {row.format}: {row.reason}"
        self.failures.append(line)
        print(f"export: FAILED {line}", flush=True)

    def servables(self) -> tuple[list[Servable], list[Servable]]:
        """(SavedModels for models.config, everything loadable for modelserver.config). Servables this
        run did not examine keep the flag a previous report gave them."""
        flagged = _previous_flags(self.repo / JSON_FILE)
        failed_models = set()
        for row in self.rows:
            flagged.pop(row.servable, None)
            if row.flagged or row.status == "failed":
                flagged[row.servable] = row.flagged or row.reason
            if row.format == "savedmodel" and row.status == "failed":
                failed_models.add(row.model)
        savedmodels, everything = [], []
        try:
            models = find_models(self.repo)
        except ExportError:
            return [], []
        for model in models:
            if model in failed_models:
                continue
            savedmodels.append(Servable(model, "tensorflow", tuple(versions(self.repo / model))))
            for format_name in FORMATS:
                name = variant_name(model, format_name)
                found = versions(self.repo / name)
                if found and name not in flagged:
                    platform = _platform(format_name, self.repo / name / str(found[-1]))
                    everything.append(Servable(name, platform, tuple(found)))
        return savedmodels, savedmodels + everything

    def order(self, row: Row) -> tuple[int, str, int]:
        """Report order: the repository's models in find_models order, SavedModel first, then formats."""
        try:
            models = find_models(self.repo)
        except ExportError:
            models = []
        position = models.index(row.model) if row.model in models else len(models)
        formats = ["savedmodel", *FORMATS]
        return position, row.model, formats.index(row.format) if row.format in formats else len(formats)

    @staticmethod
    def library_versions() -> dict[str, str]:
        from importlib.metadata import version

        names = ("tensorflow", "ai-edge-litert", "onnxruntime", "onnx", "tf2onnx", "keras")
        return {name: version(name) for name in names}


TRT_NOT_RUNNABLE = "the model server's TensorRT runtime does not execute engines yet"


def _load_runnable(format_name: str, version_dir: Path) -> Model | None:
    """The servable through its runtime; None for a TensorRT engine the model server cannot run yet
    (the engine is kept, left out of modelserver.config, and the report says why)."""
    try:
        return load(_platform(format_name, version_dir), version_dir)
    except ExportError as error:
        if format_name == "trt" and "not implemented" in str(error):
            return None
        raise


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if lines and lines[0] == "in user code:":  # tf.function errors: the cause is the last line
        return lines[-1][:300]
    return lines[0][:300] if lines else ""


def _platform(format_name: str, version_dir: Path) -> str:
    if (version_dir / "saved_model.pb").is_file():  # TF-TRT writes a SavedModel
        return "tensorflow"
    return FORMATS[format_name].platform


def _previous_flags(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {
            row["servable"]: row["flagged"] or row["reason"]
            for row in document["servables"]
            if row.get("flagged") or row.get("status") == "failed"
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}
