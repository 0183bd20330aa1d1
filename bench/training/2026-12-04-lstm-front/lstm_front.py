"""Research (2026-12-04, Intel Xeon): the full profile's LSTM with a deeper convolutional front, so the
recurrent layers read 7 rows of richer features instead of 14 rows of one convolution's output. Recipe,
head and BiLSTM as training.models.lstm had them before 2026-12-04 (a frozen copy, so this script still
records what was measured); only the front changes. "pool2" is what training.models.lstm now builds.

    PYTHONPATH=. python bench/training/2026-12-04-lstm-front/lstm_front.py FRONT SEED REPO

FRONT: "pool2" = conv 32, pool, conv 64, pool (7 rows of 7 x 64 features);
       "pool2x" = conv 32, conv 32, pool, conv 64, pool (the same shape, one more convolution).
"""

import sys

import keras
from keras import layers

import training.models.lstm as lstm_module
from training.cli import main
from training.models.registry import ModelConfig, classifier, image_input, standardise

# (filters, 2x2 max-pooling after the convolution)
FRONTS = {"pool2": [(32, True), (64, True)], "pool2x": [(32, False), (32, True), (64, True)]}


def conv_block(x, filters: int, index: int):  # type: ignore[no-untyped-def]
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"front_conv{index}")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"front_bn{index}")(x)
    return layers.Activation("relu", name=f"front_relu{index}")(x)


def build(front: list[tuple[int, bool]]):  # type: ignore[no-untyped-def]
    def build_lstm(config: ModelConfig) -> keras.Model:
        inputs = image_input()
        x = standardise(inputs, config)
        for index, (filters, pool) in enumerate(front):
            x = conv_block(x, filters, index)
            if pool:
                x = layers.MaxPooling2D(name=f"front_pool{index}")(x)
        side, channels = int(x.shape[1]), int(x.shape[3])
        x = layers.Reshape((side, side * channels), name="rows")(x)
        for index in range(config.depth):
            x = layers.Bidirectional(layers.LSTM(config.width, return_sequences=True), name=f"bilstm{index}")(x)
        pooled = layers.Concatenate(name="pool")(
            [layers.GlobalAveragePooling1D(name="mean_pool")(x), layers.GlobalMaxPooling1D(name="max_pool")(x)]
        )
        x = layers.Dropout(config.dropout, name="head_dropout")(pooled)
        return keras.Model(inputs, classifier(x, config), name="lstm")

    return build_lstm


name, seed, repo = sys.argv[1], sys.argv[2], sys.argv[3]
lstm_module.build_lstm = build(FRONTS[name])
sys.exit(main(["--model", "lstm", "--profile", "full", "--seed", seed, "--repo", repo]))
