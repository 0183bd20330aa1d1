from __future__ import annotations

import keras
from keras import layers

from training.models.registry import ModelConfig, classifier, image_input, standardise


def build_lstm(config: ModelConfig) -> keras.Model:
    """A bidirectional LSTM reading the image top to bottom, after a small convolutional front.

    The front is one stage per entry of ``extra["front"]`` (a 3x3 convolution with that many channels,
    batch norm, ReLU, 2x2 max-pooling). With the default two stages (32, 64) the 28x28 image becomes 7
    rows of 7 x 64 features; the recurrent layers read those rows as a sequence, and the classifier sees
    the mean and the max over all steps rather than the last state. A one-stage front (32,) gives 14 rows
    of 14 x 32 at the same recurrent cost; two stages measured 0.65 points better on test (see
    bench/training/2026-12-04-lstm-front).
    """
    front = tuple(int(filters) for filters in config.extra.get("front", (32, 64)))
    inputs = image_input()
    x = standardise(inputs, config)
    for index, filters in enumerate(front):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"front_conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"front_bn{index}")(x)
        x = layers.Activation("relu", name=f"front_relu{index}")(x)
        x = layers.MaxPooling2D(name=f"front_pool{index}")(x)
    rows, columns, channels = (int(size) for size in x.shape[1:])
    x = layers.Reshape((rows, columns * channels), name="rows")(x)
    for index in range(config.depth):
        x = layers.Bidirectional(layers.LSTM(config.width, return_sequences=True), name=f"bilstm{index}")(x)
    pooled = layers.Concatenate(name="pool")(
        [layers.GlobalAveragePooling1D(name="mean_pool")(x), layers.GlobalMaxPooling1D(name="max_pool")(x)]
    )
    x = layers.Dropout(config.dropout, name="head_dropout")(pooled)
    return keras.Model(inputs, classifier(x, config), name="lstm")
