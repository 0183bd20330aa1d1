"""Small models with the project's contract, for model-server tests without trained models.

``python -m tests.integration.modelserver.contract_models OUT [--versions 1,2] [--formats savedmodel,tflite,onnx]``
writes ``OUT/cnn/<v>`` for each version (SavedModel: ``serving_default`` image float32 [b,28,28,1] 0..255 ->
probabilities float32 [b,10], class_id int64 [b]; ``serving_bytes`` image_bytes string [b] of PNGs),
``OUT/cnn_dynamic/<v>/model.tflite`` and ``OUT/cnn_onnx/<v>/model.onnx`` for the newest. Each version has its own
random weights (seeded), so answers change when the version does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def build_savedmodel(directory: Path, seed: int) -> None:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class ContractModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(rng.normal(0, 0.3, size=(3, 3, 1, 8)).astype(np.float32))
            self.dense = tf.Variable(rng.normal(0, 0.05, size=(14 * 14 * 8, 10)).astype(np.float32))
            self.bias = tf.Variable(rng.normal(0, 0.1, size=(10,)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            features = tf.nn.relu(tf.nn.conv2d(image / 255.0, self.kernel, strides=1, padding="SAME"))
            pooled = tf.nn.max_pool2d(features, 2, 2, "VALID")
            logits = tf.reshape(pooled, [-1, 14 * 14 * 8]) @ self.dense + self.bias
            probabilities = tf.nn.softmax(logits)
            return {"probabilities": probabilities, "class_id": tf.argmax(probabilities, axis=1, output_type=tf.int64)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            def decode(png: tf.Tensor) -> tf.Tensor:
                return tf.ensure_shape(tf.cast(tf.io.decode_png(png, channels=1), tf.float32), [28, 28, 1])

            images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([28, 28, 1], tf.float32))
            return self.serve(images)

    model = ContractModel()
    tf.saved_model.save(
        model, str(directory), signatures={"serving_default": model.serve, "serving_bytes": model.serve_bytes}
    )


def build_tflite(saved_model: Path, target: Path) -> None:
    import tensorflow as tf

    # From the loaded signature function, not from_saved_model: for Keras 3 models saved inside a
    # tf.Module, from_saved_model loses the variables (the model answers NaN).
    loaded = tf.saved_model.load(str(saved_model))
    function = loaded.signatures["serving_default"]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.tflite").write_bytes(converter.convert())


def build_onnx(saved_model: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--saved-model",
            str(saved_model),
            "--signature_def",
            "serving_default",
            "--output",
            str(target / "model.onnx"),
            "--opset",
            "17",
        ],
        check=True,
        capture_output=True,
    )


def build(out: Path, versions: list[int], formats: set[str]) -> None:
    for version in versions:
        saved = out / "cnn" / str(version)
        if not saved.exists():
            build_savedmodel(saved, seed=version)
    latest = out / "cnn" / str(max(versions))  # variants of the newest version only
    if "tflite" in formats:
        build_tflite(latest, out / "cnn_dynamic" / latest.name)
    if "onnx" in formats:
        build_onnx(latest, out / "cnn_onnx" / latest.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--versions", default="1")
    parser.add_argument("--formats", default="savedmodel,tflite,onnx")
    args = parser.parse_args()
    build(args.out, [int(v) for v in args.versions.split(",")], set(args.formats.split(",")))


if __name__ == "__main__":
    main()


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    import struct

    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_tfrecords(path: Path, records: list[bytes]) -> None:
    """A TFRecord file (with real masked CRC32C), as tf.io.TFRecordWriter writes it."""
    import struct

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        for record in records:
            length = struct.pack("<Q", len(record))
            stream.write(length + _masked(length) + record + _masked(record))
