from __future__ import annotations

import numpy as np
import pytest

from training.models import create_model
from training.models.registry import TRAINABLE_NAMES


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
