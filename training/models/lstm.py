from __future__ import annotations

import keras
from keras import layers

from training.models.registry import ModelConfig, image_input, standardise


def build_lstm(config: ModelConfig) -> keras.Model:
    """Rows of the image as a sequence of 28 steps of 28 pixels, read by stacked bidirectional LSTMs.

    A width-3 convolution over neighbouring rows embeds each step before the recurrent layers, and
    the classifier sees both the mean and the max over all steps rather than only the last state.
    """
    inputs = image_input()
    x = standardise(inputs)
    x = layers.Reshape((28, 28), name="rows")(x)
    x = layers.Conv1D(config.width, 3, padding="same", activation="relu", name="row_embedding")(x)
    for index in range(config.depth):
        x = layers.Bidirectional(layers.LSTM(config.width, return_sequences=True), name=f"bilstm{index}")(x)
        x = layers.Dropout(config.dropout / 2, name=f"bilstm{index}_dropout")(x)
    pooled = layers.Concatenate(name="pool")(
        [layers.GlobalAveragePooling1D(name="mean_pool")(x), layers.GlobalMaxPooling1D(name="max_pool")(x)]
    )
    x = layers.Dropout(config.dropout, name="head_dropout")(pooled)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="lstm")
