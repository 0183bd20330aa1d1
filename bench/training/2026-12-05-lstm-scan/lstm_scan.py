"""Research (2026-12-05, AMD EPYC): does the LSTM add more to the ensemble when it reads the image in
another order than the CNN's rows-and-columns grid suggests? The ensemble's gain over the CNN is capped
by images all three members get wrong (355 of 10,000 on seed 0, bench/training/2026-12-04-transformer2),
so a member that errs on *other* images is worth more than one that is merely better alone.

    PYTHONPATH=. python bench/training/2026-12-05-lstm-scan/lstm_scan.py SCAN SEED REPO [ARGS]

SCAN: "columns" = the full profile's LSTM (two-stage front, BiLSTM(128), mean+max pooling) reading the
      7 columns left to right instead of the 7 rows top to bottom: same cost, another view;
      "both" = one BiLSTM(128) over the rows and a second over the columns of the same front, their
      pooled features concatenated: about twice the recurrent cost.
The recipe is the full profile's; ARGS go on to `python -m training`. The front below is a frozen copy of
training.models.lstm's as of d1565ae, so this script keeps recording what was measured if that changes.
"""

import sys

import keras
from keras import layers

import training.models.lstm as lstm_module
from training.cli import main
from training.models.registry import ModelConfig, classifier, image_input, standardise


def scan(x, name: str, width: int):  # type: ignore[no-untyped-def]
    x = layers.Bidirectional(layers.LSTM(width, return_sequences=True), name=f"bilstm_{name}")(x)
    return [
        layers.GlobalAveragePooling1D(name=f"mean_pool_{name}")(x),
        layers.GlobalMaxPooling1D(name=f"max_pool_{name}")(x),
    ]


def build(mode: str):  # type: ignore[no-untyped-def]
    def build_lstm(config: ModelConfig) -> keras.Model:
        front = tuple(int(filters) for filters in config.extra.get("front", (32, 64)))
        inputs = image_input()
        x = standardise(inputs, config)
        for index, filters in enumerate(front):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"front_conv{index}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"front_bn{index}")(x)
            x = layers.Activation("relu", name=f"front_relu{index}")(x)
            x = layers.MaxPooling2D(name=f"front_pool{index}")(x)
        rows, columns, channels = (int(size) for size in x.shape[1:])
        pooled = []
        if mode == "both":
            by_rows = layers.Reshape((rows, columns * channels), name="rows")(x)
            pooled += scan(by_rows, "rows", config.width)
        by_columns = layers.Permute((2, 1, 3), name="transpose")(x)
        by_columns = layers.Reshape((columns, rows * channels), name="columns")(by_columns)
        pooled += scan(by_columns, "columns", config.width)
        x = layers.Dropout(config.dropout, name="head_dropout")(layers.Concatenate(name="pool")(pooled))
        return keras.Model(inputs, classifier(x, config), name="lstm")

    return build_lstm


mode, seed, repo, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
if mode not in ("columns", "both"):
    sys.exit(f"SCAN must be 'columns' or 'both', got {mode!r}")
lstm_module.build_lstm = build(mode)
sys.exit(main(["--model", "lstm", "--profile", "full", "--seed", seed, "--repo", repo, *rest]))
