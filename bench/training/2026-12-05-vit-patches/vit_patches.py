"""Research (2026-12-05, AMD EPYC): a transformer member whose first layer is unlike the CNN's.

The full profile's transformer tokenizes with four 3x3 convolutions (a Compact Convolutional
Transformer), and its test mistakes are mostly the CNN's (446 of its 637 in full11). Here the tokenizer
is a plain ViT patch embedding instead: each non-overlapping 4x4 patch projected linearly to ``width``
(49 tokens, no nonlinearity before attention), then the same position embedding, pre-norm encoder
blocks and sequence pooling as training.models.transformer. Question: can such a member reach the
91.5% goal inside the hour, and does it err differently enough to lift the ensemble?

    PYTHONPATH=. python bench/training/2026-12-05-vit-patches/vit_patches.py VARIANT SEED REPO [ARGS]

VARIANT picks width, depth and epochs (below); ARGS go on to `python -m training`.
"""

import sys
from dataclasses import replace

import keras
from keras import layers

import training.models.transformer as transformer
from training import profiles
from training.cli import main
from training.models.registry import ModelConfig, classifier, image_input, standardise

VARIANTS = {
    # name: (model overrides, epochs)
    "w64d3e30": ({"width": 64, "depth": 3}, 30),
    "w96d4e24": ({"width": 96, "depth": 4}, 24),
}


def build_vit(config: ModelConfig) -> keras.Model:
    inputs = image_input()
    x = standardise(inputs, config)
    # A 4x4 convolution with stride 4 and no activation is exactly a linear map of each 4x4 patch.
    x = layers.Conv2D(config.width, 4, strides=4, name="patch_embedding")(x)
    x = layers.Reshape((49, config.width), name="tokens")(x)
    x = transformer.PositionEmbedding(name="position_embedding")(x)
    for index in range(config.depth):
        x = transformer._encoder_block(x, config, index)
    x = layers.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
    x = transformer.SequencePooling(name="sequence_pool")(x)
    return keras.Model(inputs, classifier(x, config), name="transformer")


if __name__ == "__main__":
    name, seed, repo, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    model, epochs = VARIANTS[name]
    transformer.build_transformer = build_vit
    full = profiles.PROFILES["full"]
    recipe = replace(full.recipes["transformer"], epochs=epochs, model=model)
    profiles.PROFILES["full"] = replace(full, recipes={**full.recipes, "transformer": recipe})
    sys.exit(main(["--model", "transformer", "--profile", "full", "--seed", seed, "--repo", repo, *rest]))
