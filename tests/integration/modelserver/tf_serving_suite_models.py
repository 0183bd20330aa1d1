"""The SavedModels tensorflow_model_server_test.py writes in its own tests, written the same way.

``python -m tests.integration.modelserver.tf_serving_suite_models OUT`` (a subprocess, so the test
process does not import TensorFlow) writes, each as version 00000123 under OUT/<name>:

- ``tf_saved_model_save``: test_tf_saved_model_save, a tf.train.Checkpoint with two variables and
  one concrete function ``y = v1 * v2 * x`` (3 * 2 * x).
- ``multiple_signatures``: test_tf_saved_model_save_multiple_signatures, serving_default answers
  ``y = 1.0`` and ``custom_signature_key`` answers ``y = 2.0``.
- ``keras_sequential``: test_sequential_keras_saved_model_save, Input ``x`` then an identity Lambda.
- ``keras_distributed``: test_distrat_sequential_keras_saved_model_save, the same built under a
  MirroredStrategy over two virtual CPUs, with a Dense layer of ones in between.

Keras 3 (this project's Keras) names a Sequential model's signature tensors ``inputs`` and
``output_0`` where TF Serving's test, written for Keras 2, used ``x`` and ``y``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def build(out: Path) -> None:
    import keras
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.0)
    root.v2 = tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(
        root,
        str(out / "tf_saved_model_save" / "00000123"),
        root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)),
    )

    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(
        root,
        str(out / "multiple_signatures" / "00000123"),
        signatures={"serving_default": root.f, "custom_signature_key": root.g},
    )

    model = keras.Sequential(
        [keras.layers.Input(dtype="float32", shape=(1,), name="x"), keras.layers.Lambda(lambda x: x, name="y")]
    )
    tf.saved_model.save(model, str(out / "keras_sequential" / "00000123"))

    strategy = tf.distribute.MirroredStrategy(devices=("/cpu:0", "/cpu:1"))
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.layers.Input(dtype="float32", shape=(1,), name="x"),
                keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros"),
                keras.layers.Lambda(lambda x: x, name="y"),
            ]
        )
    tf.saved_model.save(model, str(out / "keras_distributed" / "00000123"))


if __name__ == "__main__":
    build(Path(sys.argv[1]))
