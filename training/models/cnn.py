from __future__ import annotations

import keras
from keras import layers

from training.models.registry import ModelConfig, image_input, standardise


def _conv_bn(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_cnn(config: ModelConfig) -> keras.Model:
    """A VGG-style CNN: three stages of 3x3 conv+BN, widths w, 2w, 4w, then global pooling.

    The first stage (28x28, the costliest per channel) has one convolution, the others `depth`; the
    first two stages downsample with max-pooling (28 -> 14 -> 7). Dropout after each stage and before
    the classifier regularises it on a dataset this small.
    """
    inputs = image_input()
    x = standardise(inputs)
    for stage, filters in enumerate((config.width, config.width * 2, config.width * 4)):
        for block in range(1 if stage == 0 else config.depth):
            x = _conv_bn(x, filters, f"stage{stage}_block{block}")
        if stage < 2:
            x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        x = layers.SpatialDropout2D(config.dropout / 2, name=f"stage{stage}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(config.dropout, name="head_dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")
