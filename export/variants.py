"""What a variant is: its format, file, model server platform, and the checks every one must pass.

A variant ``<model>_<format>/<version>/`` is a servable of its own with the SavedModel's contract
(``serving_default``: the same input and output names, dtypes and shapes). It is written in a staging
directory beside its final place, checked there through the model server's own runtime, and renamed
into place (training.repository.staged_directory); an existing version is verified, never rewritten.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.modelserver import runtimes
from serving.modelserver.runtimes.base import DEFAULT_SIGNATURE, Model, RuntimeOptions, TensorSpec
from serving.tensors import dtype_name
from training.savedmodel import LABELS_ASSET, MODEL_CARD


class ExportError(Exception):
    """One conversion or check that failed; the message is the cause, in one line."""


class Skipped(Exception):
    """A format this machine cannot produce (no GPU, no TensorRT); the message says why."""


@dataclass(frozen=True)
class Format:
    name: str
    filename: str
    platform: str  # model_platform in TF Serving's config, as our model server reads it
    runtime: str  # what serves it, for the report


FORMATS: dict[str, Format] = {
    "dynamic": Format("dynamic", "model.tflite", "tflite", "LiteRT (XNNPACK)"),
    "fp16": Format("fp16", "model.tflite", "tflite", "LiteRT (XNNPACK)"),
    "int8": Format("int8", "model.tflite", "tflite", "LiteRT (XNNPACK)"),
    "onnx": Format("onnx", "model.onnx", "onnx", "onnxruntime (CPU)"),
    "trt": Format("trt", "model.plan", "tensorrt", "TensorRT"),
}
SAVEDMODEL_RUNTIME = "TensorFlow (model server's SavedModel runtime)"
# Measurement runs the model server's runtimes with its defaults, except one TFLite interpreter.
MEASURE_OPTIONS = RuntimeOptions(interpreters=1)


def variant_name(model: str, format_name: str) -> str:
    return f"{model}_{format_name}"


def parse_formats(names: list[str] | None) -> list[str]:
    if not names:
        return list(FORMATS)
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {unknown[0]!r}; choose from: {', '.join(FORMATS)}")
    # ONNX first: the TensorRT engine is built from it.
    return [name for name in FORMATS if name in names]


def load(platform: str, version_dir: Path) -> Model:
    try:
        return runtimes.load(platform, version_dir, MEASURE_OPTIONS)
    except runtimes.LoadError as error:
        raise ExportError(str(error).splitlines()[0]) from None


def describe(spec: TensorSpec) -> str:
    shape = "?" if spec.shape is None else "[" + ",".join("None" if d < 0 else str(d) for d in spec.shape) + "]"
    return f"{dtype_name(spec.dtype)}{shape}"


def contract(model: Model) -> dict[str, dict[str, str]]:
    """serving_default's inputs and outputs as {"inputs": {alias: "DT_FLOAT[None,28,28,1]"}, ...}."""
    signature = model.signatures.get(DEFAULT_SIGNATURE)
    if signature is None:
        raise ExportError(f"no {DEFAULT_SIGNATURE!r} signature (has {', '.join(sorted(model.signatures)) or 'none'})")
    return {
        "inputs": {alias: describe(spec) for alias, spec in sorted(signature.inputs.items())},
        "outputs": {alias: describe(spec) for alias, spec in sorted(signature.outputs.items())},
    }


def check_contract(model: Model, expected: dict[str, dict[str, str]]) -> None:
    found = contract(model)
    for side in ("inputs", "outputs"):
        if found[side] != expected[side]:
            raise ExportError(f"{side} {found[side]} differ from the SavedModel's {expected[side]}")


def copy_metadata(source_dir: Path, destination: Path, format_name: str, source_version: int) -> None:
    """Labels and model card travel with every variant (the gateway reads them from the repository)."""
    labels = source_dir / "assets" / LABELS_ASSET
    if labels.is_file():
        (destination / "assets").mkdir(exist_ok=True)
        shutil.copyfile(labels, destination / "assets" / LABELS_ASSET)
    card_path = source_dir / MODEL_CARD
    card: dict[str, Any] = {}
    if card_path.is_file():
        card = json.loads(card_path.read_text(encoding="utf-8"))
    card["export"] = {"format": format_name, "from": f"{source_dir.parent.name}/{source_version}"}
    (destination / MODEL_CARD).parent.mkdir(parents=True, exist_ok=True)
    (destination / MODEL_CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
