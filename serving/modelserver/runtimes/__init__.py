"""Runtimes behind one interface (``base.Model``); one module per format, imported on first use."""

from __future__ import annotations

import importlib
from pathlib import Path

from serving.modelserver.runtimes.base import LoadError, Model, RuntimeOptions, Signature, TensorSpec

# model_platform (TF Serving's config) -> module in this package
PLATFORMS = {"tensorflow": "savedmodel", "tflite": "tflite", "onnx": "onnx", "tensorrt": "tensorrt"}
_FILES = {
    "savedmodel": "saved_model.pb",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
    "tensorrt": "model.plan",
}


def runtime_for(platform: str, version_dir: Path, prefer_tflite: bool = False) -> str:
    """The runtime module for a version directory. ``tensorflow`` loads a SavedModel, or model.tflite
    when --prefer_tflite_model is set (as TF Serving does) or when it is the only model file there."""
    if platform not in PLATFORMS:
        raise LoadError(f"Unsupported model_platform: {platform!r} (one of {', '.join(PLATFORMS)})")
    module = PLATFORMS[platform]
    if module == "savedmodel":
        has_tflite = (version_dir / "model.tflite").is_file()
        has_saved_model = (version_dir / "saved_model.pb").is_file() or (
            version_dir / "saved_model.pbtxt"
        ).is_file()
        if has_tflite and (prefer_tflite or not has_saved_model):
            return "tflite"
    return module


def load(platform: str, version_dir: Path, options: RuntimeOptions, prefer_tflite: bool = False) -> Model:
    module_name = runtime_for(platform, version_dir, prefer_tflite)
    module = importlib.import_module(f"serving.modelserver.runtimes.{module_name}")
    model: Model = module.load(version_dir, options)
    return model


__all__ = [
    "PLATFORMS",
    "LoadError",
    "Model",
    "RuntimeOptions",
    "Signature",
    "TensorSpec",
    "load",
    "runtime_for",
]
