"""TFLite variants: dynamic-range, float16 weights, full-integer int8 (float at the boundary).

The SavedModels hold Keras 3 models inside a tf.Module, whose variables ``from_saved_model`` leaves
as resource reads that int8 calibration cannot run (READ_VARIABLE fails). Converting the loaded
``serving_default`` function freezes them, keeps its signature (input ``image``, the same output
names) and so the contract.

Keras 3's LSTM runs a while loop over a TensorList whose element shape holds the batch dimension;
with a dynamic batch TFLite refuses it ("TensorListReserve op requires element_shape to be static").
For such models (lstm, and the ensemble that contains it) the graph is rebuilt from the Keras models
kept in ``assets.extra/keras_model.keras`` with ``unroll=True`` (same weights, same arithmetic, 28
fixed steps), saved with the same serving wrapper in a temporary SavedModel, and converted from there.
The ensemble is always rebuilt with its model card's combination; its vote uses tf.argmax (Keras' argmax
emits BitwiseAnd and Bitcast, which neither TFLite nor ONNX has; the ONNX variant of the ensemble converts
the rebuilt graph too).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from export.variants import ExportError

TFLITE_FORMATS = ("dynamic", "fp16", "int8")
KERAS_FILE = "assets.extra/keras_model.keras"


def convert(saved_model: Path, format_name: str, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    function = loaded.signatures["serving_default"]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if format_name == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif format_name == "int8":

        def representative() -> Iterator[dict[str, np.ndarray]]:
            for index in range(len(calibration)):
                yield {"image": calibration[index : index + 1]}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    elif format_name != "dynamic":
        raise ExportError(f"not a TFLite format: {format_name!r}")
    try:
        model: bytes = converter.convert()
    except Exception as error:  # the converter raises ConverterError, RuntimeError, ValueError...
        raise ExportError(f"TFLite converter: {_first_line(error)}") from None
    return model


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # The converter's useful line is usually the one naming the op ("... op ... is neither ...").
    for line in lines:
        if "error:" in line.lower() or "failed" in line.lower():
            return line[:300]
    return (lines[0] if lines else type(error).__name__)[:300]


def write(saved_model: Path, format_name: str, calibration: np.ndarray, destination: Path, scratch: Path) -> None:
    """Convert into ``destination/model.tflite``. ``scratch`` (one per export run) keeps a rebuilt
    SavedModel, so the three TFLite variants of a model rebuild it once."""
    graph = rebuilt(saved_model, scratch) if needs_rebuild(saved_model) else saved_model
    (destination / "model.tflite").write_bytes(convert(graph, format_name, calibration))


def is_ensemble(saved_model: Path) -> bool:
    from training.savedmodel import read_model_card

    return read_model_card(saved_model).get("kind") == "ensemble"


def needs_rebuild(saved_model: Path) -> bool:
    return is_ensemble(saved_model) or _has_recurrent_layers(saved_model)


def rebuilt(saved_model: Path, scratch: Path) -> Path:
    """The model rebuilt from its Keras file(s) with recurrent layers unrolled and the ensemble's vote in
    plain TF ops, saved once per run under ``scratch``."""
    path = scratch / f"{saved_model.parent.name}-{saved_model.name}-rebuilt"
    if not path.is_dir():
        save_unrolled(saved_model, path)
    return path


def _keras_files(saved_model: Path) -> list[Path]:
    from training.savedmodel import read_model_card

    card = read_model_card(saved_model)
    if card.get("kind") != "ensemble":
        return [saved_model / KERAS_FILE]
    members = card.get("members") or []
    if not members:
        raise ExportError(f"{saved_model}: the ensemble's model card lists no members")
    repo = saved_model.parent.parent
    return [repo / member["name"] / str(member["version"]) / KERAS_FILE for member in members]


def _has_recurrent_layers(saved_model: Path) -> bool:
    """Keras RNN layers (their config has ``unroll``) in the model or, for the ensemble, a member."""
    for path in _keras_files(saved_model):
        try:
            with zipfile.ZipFile(path) as archive:
                if b'"unroll"' in archive.read("config.json"):
                    return True
        except (OSError, KeyError, zipfile.BadZipFile):
            continue  # no Keras file: convert the SavedModel as it is
    return False


def _unrolled_keras(keras_file: Path) -> Any:
    import keras

    import training.models.transformer  # noqa: F401  (registers the custom layers for loading)

    if not keras_file.is_file():
        raise ExportError(f"{keras_file} is missing; cannot rebuild the recurrent layers unrolled")
    model = keras.saving.load_model(keras_file, compile=False)
    config = model.get_config()

    def unroll(node: Any) -> None:
        if isinstance(node, dict):
            if "unroll" in node:
                node["unroll"] = True
            for value in node.values():
                unroll(value)
        elif isinstance(node, list):
            for value in node:
                unroll(value)

    unroll(config)
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def save_unrolled(saved_model: Path, destination: Path) -> None:
    """The SavedModel's Keras graph with every recurrent layer unrolled, written as a SavedModel."""
    from training.savedmodel import read_model_card, write_savedmodel

    card = read_model_card(saved_model)
    models = [_unrolled_keras(path) for path in _keras_files(saved_model)]
    model = _ensemble(models, card) if card.get("kind") == "ensemble" else models[0]
    labels = [str(label) for label in card.get("labels", range(10))]
    write_savedmodel(model, destination, labels, card)


def _ensemble(members: list[Any], card: dict[str, Any]) -> Any:
    """training.ensemble.build_ensemble with the combination from the model card (its vote is plain TF ops)."""
    from training.calibration import Combination
    from training.ensemble import build_ensemble

    combination = card.get("combination")
    return build_ensemble(members, Combination.from_dict(combination) if combination else None)
