"""A TFLite model whose ParseExampleV2 op feeds more ops: ``z = 2 * x + 1`` of the parsed feature ``x``.

``python -m tests.integration.modelserver.parse_example_model OUT/1/model.tflite`` (a subprocess, so
the test process does not import TensorFlow). Converted as TF Serving's testdata script
``parse_example_tflite.py`` converts its model: custom ops allowed, builtins only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def build(path: Path) -> None:
    import tensorflow as tf

    spec = {
        "x": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        "y": tf.io.FixedLenFeature([1], tf.string, default_value=["missing"]),
    }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="input")])
    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"z": tf.io.parse_example(serialized, spec)["x"] * 2.0 + 1.0}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([parse.get_concrete_function()], parse)
    converter.allow_custom_ops = True
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())


if __name__ == "__main__":
    build(Path(sys.argv[1]))
