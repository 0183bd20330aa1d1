"""ONNX variant: tf2onnx from the SavedModel's ``serving_default`` (opset 17, dynamic batch), then
onnx.checker. tf2onnx keeps the signature's input and output names, so the graph's ``image``,
``probabilities`` and ``class_id`` (int64) are the contract's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from export.variants import ExportError

OPSET = 17
TIMEOUT_S = 1800


def write(saved_model: Path, destination: Path) -> None:
    output = destination / "model.onnx"
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(saved_model),
        "--tag",
        "serve",
        "--signature_def",
        "serving_default",
        "--opset",
        str(OPSET),
        "--output",
        str(output),
    ]
    # A process of its own: tf2onnx rewrites TF graphs in global state and logs at length.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise ExportError(f"tf2onnx did not finish in {TIMEOUT_S} s") from None
    if result.returncode != 0 or not output.is_file():
        raise ExportError(f"tf2onnx failed: {_cause(result.stderr)}")
    check(output)


def check(path: Path) -> None:
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises ValidationError, DecodeError, OSError
        raise ExportError(f"onnx.checker: {str(error).splitlines()[0]}") from None
    opset = max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)
    if opset < OPSET:
        raise ExportError(f"{path} has opset {opset}, expected >= {OPSET}")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.HasField("dim_value"):
        raise ExportError(f"{path}: the batch dimension is fixed at {batch.dim_value}, expected dynamic")


def _cause(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else "no output"
