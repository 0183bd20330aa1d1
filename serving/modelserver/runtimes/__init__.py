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
    when --prefer_tflite_model is set (as TF Serving does); where a version holds no SavedModel, the
    one model file it has decides (model.tflite, model.onnx or model.plan), which lets
    --model_base_path serve any variant."""
    if platform not in PLATFORMS:
        raise LoadError(f"Unsupported model_platform: {platform!r} (one of {', '.join(PLATFORMS)})")
    module = PLATFORMS[platform]
    if module != "savedmodel":
        return module
    has_saved_model = any((version_dir / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt"))
    if prefer_tflite and (version_dir / "model.tflite").is_file():
        return "tflite"
    if not has_saved_model:
        for candidate in ("tflite", "onnx", "tensorrt"):
            if (version_dir / _FILES[candidate]).is_file():
                return candidate
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
