from __future__ import annotations

import keras
import numpy as np
import pytest

from training.models import create_model
from training.models.registry import TRAINABLE_NAMES, default_config


@pytest.mark.parametrize("name", TRAINABLE_NAMES)
def test_every_registered_model_builds_and_gives_distributions(name):
    model = create_model(name)
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.float32)
    probabilities = np.asarray(model(images, training=False))
    assert probabilities.shape == (4, 10)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'; trainable models: cnn, lstm, transformer"):
        create_model("resnet")
    with pytest.raises(ValueError, match="build the ensemble from trained members"):
        create_model("ensemble")


def test_ensemble_vote_layer_rules():
    from training.ensemble import Vote

    members = np.array(
        [
            # two members say class 1, one says class 2: majority 1, soft vote 2
            [[0.0, 0.6, 0.4] + [0.0] * 7, [0.0, 0.55, 0.45] + [0.0] * 7, [0.0, 0.0, 1.0] + [0.0] * 7],
            # all disagree: the tie is broken by the soft vote (class 4)
            [
                [0.6, 0.0, 0.0, 0.0, 0.4] + [0.0] * 5,
                [0.0, 0.0, 0.0, 0.6, 0.4] + [0.0] * 5,
                [0.0, 0.0, 0.0, 0.0, 0.6, 0.4] + [0.0] * 4,
            ],
        ],
        dtype=np.float32,
    )
    out = {key: np.asarray(value) for key, value in Vote()(members).items()}
    np.testing.assert_allclose(out["probabilities"], members.mean(axis=1), atol=1e-6)
    assert out["class_id"].tolist() == [2, 4]
    assert out["hard_vote_class_id"].tolist() == [1, 4]
    assert out["class_id"].dtype == np.int64 and out["hard_vote_class_id"].dtype == np.int64


@pytest.mark.parametrize("mode", ["logit", "mean"])
def test_ensemble_vote_layer_applies_the_fitted_combination(mode):
    from training.calibration import Combination
    from training.ensemble import Vote

    rng = np.random.default_rng(0)
    members = rng.dirichlet(np.full(10, 0.3), (16, 3)).astype(np.float32)
    members[0, 1] = np.eye(10)[3]  # a zero probability: clipped before the log, in both places
    combination = Combination(mode, [0.8, 1.5, 3.0], [0.5, 0.3, 0.2] if mode == "mean" else [1.2, 0.7, 0.4])
    layer = Vote(combination.to_dict())
    out = {key: np.asarray(value) for key, value in layer(members).items()}
    expected = combination.apply(members)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert out["class_id"].tolist() == expected.argmax(axis=1).tolist()
    counts = np.eye(10)[members.argmax(axis=2)].sum(axis=1)
    assert out["hard_vote_class_id"].tolist() == (counts + 0.5 * expected).argmax(axis=1).tolist()
    assert Vote.from_config(layer.get_config()).combination == combination


def test_flip_tta_averages_the_image_and_its_mirror():
    from training.models.registry import with_flip_tta

    model = create_model("cnn", default_config("cnn"))
    served = with_flip_tta(model)
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1)).astype(np.float32)
    expected = (np.asarray(model(images)) + np.asarray(model(images[:, :, ::-1]))) / 2
    np.testing.assert_allclose(np.asarray(served(images)), expected, atol=1e-6)


@pytest.mark.parametrize("name", TRAINABLE_NAMES)
def test_models_take_the_number_of_classes_and_pixel_statistics(name):
    config = default_config(name).with_overrides(classes=4, pixel_mean=0.5, pixel_std=0.25)
    model = create_model(name, config)
    assert model.output_shape == (None, 4)
    assert model.get_layer("standardise").get_config()["offset"] == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="unknown model settings"):
        default_config(name).with_overrides(colour=True)


def test_cnn_head_keeps_the_feature_map_or_pools_it():
    flat = create_model("cnn", default_config("cnn").with_overrides(extra={"head": "flatten"}))
    pooled = create_model("cnn", default_config("cnn"))
    # 7x7 positions of the last stage's 4w channels feed the classifier, against 4w after pooling
    assert flat.get_layer("probabilities").kernel.shape == (7 * 7 * 128, 10)
    assert pooled.get_layer("probabilities").kernel.shape == (128, 10)
    with pytest.raises(ValueError, match="cnn: unknown head 'spp'; expected 'pool' or 'flatten'"):
        create_model("cnn", default_config("cnn").with_overrides(extra={"head": "spp"}))


@pytest.mark.parametrize(("front", "rows", "parameters"), [((32, 64), 7, 615_082), ((32,), 14, 596_394)])
def test_lstm_reads_the_rows_its_convolutional_front_leaves(front, rows, parameters):
    model = create_model("lstm", default_config("lstm").with_overrides(extra={"front": front}))
    # Two stages of conv + 2x2 pool give 7 rows of 7 x 64 features, one stage 14 rows of 14 x 32: the
    # BiLSTM reads 448 features per step either way, so the recurrent cost is the same.
    assert tuple(model.get_layer("rows").output.shape) == (None, rows, 448)
    assert model.count_params() == parameters
    assert [layer.name for layer in model.layers if layer.name.startswith("front_conv")] == [
        f"front_conv{index}" for index in range(len(front))
    ]


@pytest.mark.parametrize(("tokenizer_depth", "convolutions", "parameters"), [(2, 4, 169_963), (1, 2, 123_499)])
def test_transformer_tokenizer_depth_sets_the_convolutions_per_stage(tokenizer_depth, convolutions, parameters):
    # 123,499 is the transformer of the full runs up to 2026-12-04; both give 49 tokens of width 64.
    config = default_config("transformer").with_overrides(extra={"tokenizer_depth": tokenizer_depth})
    model = create_model("transformer", config)
    assert model.count_params() == parameters
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == convolutions
    assert tuple(model.get_layer("tokens").output.shape) == (None, 49, 64)


def test_transformer_rejects_a_tokenizer_without_convolutions():
    config = default_config("transformer").with_overrides(extra={"tokenizer_depth": 0})
    with pytest.raises(ValueError, match="tokenizer_depth must be at least 1, got 0"):
        create_model("transformer", config)
