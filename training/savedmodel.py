"""SavedModel export with the project's serving contract (see DESIGN.md, "One model contract").

Signatures:
- ``serving_default``: ``image`` float32 [batch, 28, 28, 1], raw 0..255 ->
  ``probabilities`` float32 [batch, 10], ``class_id`` int64 [batch] (+ the ensemble's outputs);
- ``serving_bytes``: ``image_bytes`` string [batch] of PNG/JPEG (GIF, BMP, WebP), decoded and prepared
  in the graph as the gateway does (docs/pictures.md: a photo's light background inverted, the object
  trimmed, fitted and centred; dataset-style 28x28 pictures unchanged) -> the same outputs.
  TF Serving REST clients send ``{"b64": ...}``.

The label names are an asset (``assets/labels.txt``) and, with the rest of the model card, in
``assets.extra/model_card.json`` (TF Serving ignores assets.extra).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from training.pictures import prepare_picture

BYTES_SIGNATURE = "serving_bytes"
LABELS_ASSET = "labels.txt"
MODEL_CARD = "assets.extra/model_card.json"


class ServingModule(tf.Module):
    """Wraps a Keras model (softmax probabilities, or a dict of outputs) in the serving contract."""

    def __init__(self, model: keras.Model, labels: list[str]) -> None:
        super().__init__()
        self.model = model
        # Track the backing tf.Variables explicitly (as keras.export.ExportArchive does): without
        # this the SavedModel loads in TF2 but a TF1 session, and so tensorflow_model_server, fails
        # with "Could not find variable ..." (keras-team/keras#20095, tensorflow/serving#2226).
        self.model_variables = [variable.value for variable in model.variables]
        self._labels_file = Path(tempfile.mkdtemp()) / LABELS_ASSET
        self._labels_file.write_text("\n".join(labels) + "\n", encoding="utf-8")
        self.labels = tf.saved_model.Asset(str(self._labels_file))

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="image")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = self.model(image, training=False)
        if not isinstance(outputs, dict):
            outputs = {"probabilities": outputs}
        result = {key: tf.identity(value, name=key) for key, value in outputs.items()}
        result["probabilities"] = tf.cast(result["probabilities"], tf.float32)
        if "class_id" not in result:
            result["class_id"] = tf.argmax(result["probabilities"], axis=-1, output_type=tf.int64)
        return result

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(prepare_picture, image_bytes, fn_output_signature=tf.TensorSpec([28, 28, 1], tf.float32))
        return self.serve(images)


def write_savedmodel(model: keras.Model, directory: Path, labels: list[str], card: dict[str, Any]) -> None:
    """Write the SavedModel, its labels asset and model card into ``directory`` (a staging dir)."""
    module = ServingModule(model, labels)
    tf.saved_model.save(
        module,
        str(directory),
        signatures={"serving_default": module.serve, BYTES_SIGNATURE: module.serve_bytes},
    )
    card_path = directory / MODEL_CARD
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_model_card(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MODEL_CARD
    try:
        card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the model card ({error})") from error
    return card
