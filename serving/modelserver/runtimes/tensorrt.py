"""TensorRT runtime placeholder: serialized engines (``model.plan``) need an NVIDIA GPU and the
``tensorrt`` package. Where either is missing (CI, laptops), the version fails to load with a status
that says so, and every other model keeps serving."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from serving.modelserver.runtimes.base import LoadError, Model, RuntimeOptions, version_file


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidiactl").exists():
        return "no NVIDIA GPU is visible"
    return None


def load(path: Path, options: RuntimeOptions) -> Model:
    plan = version_file(path, "model.plan")
    reason = unavailable_reason()
    if reason is None:
        reason = "executing TensorRT engines is not implemented in this model server yet"
    raise LoadError(f"Cannot load TensorRT engine {plan}: {reason}; serve the ONNX or SavedModel variant")
