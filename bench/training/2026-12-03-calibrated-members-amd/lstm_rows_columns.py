"""Research: an LSTM that reads the image's rows and its columns (two BiLSTMs of half the width, one over
the 14 rows and one over the 14 columns of the convolutional front's output), trained with the full
profile's LSTM recipe; everything else as training.models.lstm.

    PYTHONPATH=. python bench/training/2026-12-03-calibrated-members-amd/lstm_rows_columns.py REPO
"""

import sys

import keras
from keras import layers

import training.models.lstm as lstm_module
from training.cli import main
from training.models.registry import ModelConfig, classifier, image_input, standardise


def build_rows_columns(config: ModelConfig) -> keras.Model:
    filters = int(config.extra.get("filters", 32))
    width = config.width // 2
    inputs = image_input()
    x = standardise(inputs, config)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="front_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name="front_bn")(x)
    x = layers.Activation("relu", name="front_relu")(x)
    x = layers.MaxPooling2D(name="front_pool")(x)
    rows = layers.Reshape((14, 14 * filters), name="rows")(x)
    columns = layers.Reshape((14, 14 * filters), name="columns")(layers.Permute((2, 1, 3), name="transpose")(x))
    pooled = []
    for name, sequence in (("rows", rows), ("columns", columns)):
        y = layers.Bidirectional(layers.LSTM(width, return_sequences=True), name=f"bilstm_{name}")(sequence)
        pooled += [
            layers.GlobalAveragePooling1D(name=f"mean_pool_{name}")(y),
            layers.GlobalMaxPooling1D(name=f"max_pool_{name}")(y),
        ]
    x = layers.Dropout(config.dropout, name="head_dropout")(layers.Concatenate(name="pool")(pooled))
    return keras.Model(inputs, classifier(x, config), name="lstm")


lstm_module.build_lstm = build_rows_columns
sys.exit(main(["--model", "lstm", "--profile", "full", "--repo", sys.argv[1]]))
