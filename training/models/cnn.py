from __future__ import annotations

import keras
from keras import layers

from training.models.registry import ModelConfig, classifier, image_input, standardise


def _conv_bn(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_cnn(config: ModelConfig) -> keras.Model:
    """A VGG-style CNN: three stages of 3x3 conv+BN+ReLU, widths w, 2w, 4w, then global average pooling.

    The first stage (28x28, the costliest per channel) has ``extra["stem_depth"]`` convolutions (default
    1), the others ``depth``; max-pooling between stages (28 -> 14 -> 7). Dropout before the classifier.
    The head (``extra["head"]``) is global average pooling (``"pool"``, the default) or the flattened 7x7
    feature map (``"flatten"``), which keeps where in the image each feature was found.
    """
    inputs = image_input()
    x = standardise(inputs, config)
    stem_depth = int(config.extra.get("stem_depth", 1))
    for stage, filters in enumerate((config.width, config.width * 2, config.width * 4)):
        for block in range(stem_depth if stage == 0 else config.depth):
            x = _conv_bn(x, filters, f"stage{stage}_block{block}")
        if stage < 2:
            x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    head = config.extra.get("head", "pool")
    if head == "pool":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif head == "flatten":
        x = layers.Flatten(name="flatten")(x)
    else:
        raise ValueError(f"cnn: unknown head {head!r}; expected 'pool' or 'flatten'")
    x = layers.Dropout(config.dropout, name="head_dropout")(x)
    return keras.Model(inputs, classifier(x, config), name="cnn")
