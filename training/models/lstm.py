from __future__ import annotations

import keras
from keras import layers

from training.models.registry import ModelConfig, classifier, image_input, standardise


def build_lstm(config: ModelConfig) -> keras.Model:
    """A bidirectional LSTM reading the image top to bottom, after a small convolutional front.

    The front (one 3x3 convolution with ``extra["filters"]`` channels, batch norm, ReLU, 2x2 max-pooling)
    turns the 28x28 image into 14 rows of 14 x filters features; the recurrent layers read those 14 rows
    as a sequence, and the classifier sees the mean and the max over all steps rather than the last state.
    """
    filters = int(config.extra.get("filters", 32))
    inputs = image_input()
    x = standardise(inputs, config)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="front_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name="front_bn")(x)
    x = layers.Activation("relu", name="front_relu")(x)
    x = layers.MaxPooling2D(name="front_pool")(x)
    x = layers.Reshape((14, 14 * filters), name="rows")(x)
    for index in range(config.depth):
        x = layers.Bidirectional(layers.LSTM(config.width, return_sequences=True), name=f"bilstm{index}")(x)
    pooled = layers.Concatenate(name="pool")(
        [layers.GlobalAveragePooling1D(name="mean_pool")(x), layers.GlobalMaxPooling1D(name="max_pool")(x)]
    )
    x = layers.Dropout(config.dropout, name="head_dropout")(pooled)
    return keras.Model(inputs, classifier(x, config), name="lstm")
