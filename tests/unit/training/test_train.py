"""Pieces of the training loop: augmentation, the one-cycle schedule, the precision choice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from training.precision import cpu_has_bf16, enable_onednn, resolve


def test_random_erase_blanks_one_rectangle_per_chosen_image():
    import tensorflow as tf

    from training.train import random_erase

    images = tf.ones((64, 28, 28, 1))
    np.testing.assert_array_equal(random_erase(images, 0.0).numpy(), images.numpy())
    erased = random_erase(images, 1.0).numpy()[..., 0]
    for image in erased:
        rows, columns = np.nonzero(image == 0)
        assert rows.size > 0  # every image lost a rectangle ...
        height, width = rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
        assert height <= 13 and width <= 13 and rows.size == height * width  # ... and only one


def test_one_cycle_rises_to_the_peak_then_falls_to_a_thousandth():
    from training.schedules import OneCycle

    schedule = OneCycle(1e-2, total_steps=100, warmup_fraction=0.2)
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100, 150)]
    assert values[0] == pytest.approx(4e-4) and values[1] == pytest.approx(5.2e-3)
    assert values[2] == pytest.approx(1e-2) and values[3] == pytest.approx((1e-2 + 1e-5) / 2)
    assert values[4] == pytest.approx(1e-5) and values[5] == pytest.approx(1e-5)
    assert OneCycle.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="one-cycle needs"):
        OneCycle(0.0, 10)


def test_precision_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert cpu_has_bf16(amx) and cpu_has_bf16(zen4)
    assert not cpu_has_bf16(plain) and not cpu_has_bf16(tmp_path / "none")
    assert resolve("float32") == "float32" and resolve("bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr("training.precision.cpu_has_bf16", lambda: False)
    assert resolve("auto") == "float32"
    monkeypatch.setattr("training.precision.cpu_has_bf16", lambda: True)
    monkeypatch.setattr("training.precision.onednn_enabled", lambda: False)
    assert resolve("auto") == "float32"  # emulated bfloat16 is over 10x slower
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve("half")


def test_training_asks_for_onednn_unless_the_caller_chose(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    enable_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    enable_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_training_batches_cover_every_image_once_per_epoch_without_autotuning():
    from training.profiles import Recipe
    from training.train import make_dataset

    images = np.arange(250, dtype=np.uint8).reshape(250, 1, 1).repeat(28, 1).repeat(28, 2)
    labels = np.arange(250) % 10
    recipe = Recipe(epochs=1, learning_rate=1e-3, weight_decay=0.0, shift_pixels=0.0, flip=False)
    data = make_dataset(images, labels, 10, 64, recipe, seed=0)
    # The autotuning thread of a deleted iterator sleeps out its period in TF 2.21 (up to a minute a
    # time, once per epoch under Keras); the training pipeline is fixed instead.
    assert data.options().autotune.enabled is False
    epochs = []
    for _ in range(2):
        seen = [(x.numpy(), y.numpy()) for x, y in data]
        assert [len(x) for x, _ in seen] == [64, 64, 64, 58]
        pixels = np.concatenate([x[:, 0, 0, 0] for x, _ in seen]).astype(int)
        classes = np.concatenate([y.argmax(axis=1) for _, y in seen])
        assert sorted(pixels) == list(range(250)) and (classes == pixels % 10).all()
        epochs.append(pixels)
    assert (epochs[0] != epochs[1]).any()  # reshuffled every epoch


def test_calibrate_folds_the_fitted_temperature_into_the_last_layer():
    import keras

    from training.calibration import fit_temperature, log_loss, scale_temperature
    from training.models.registry import ModelConfig, classifier, image_input, with_flip_tta
    from training.train import calibrate

    keras.utils.set_random_seed(0)
    inputs = image_input()
    features = keras.layers.Dense(16, activation="tanh")(keras.layers.Flatten()(inputs / 255.0))
    model = keras.Model(inputs, classifier(features, ModelConfig("tiny")))
    kernel, bias = model.get_layer("probabilities").get_weights()
    model.get_layer("probabilities").set_weights([kernel * 8.0, bias])  # an overconfident model
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 28, 28)).astype(np.uint8)
    before = model.predict(images[..., None].astype(np.float32), verbose=0)
    mirrored = model.predict(images[:, :, ::-1, None].astype(np.float32), verbose=0)
    labels = (before + rng.random(before.shape)).argmax(axis=1)  # right about as often as it is sure

    card = calibrate(model, True, images, labels, seed=7)
    temperature = card["temperature"]
    assert temperature == pytest.approx(fit_temperature([before, mirrored], labels), rel=1e-6)
    assert temperature > 1.5 and card["fitted_on"] == "validation split (300 images, seed 7)"
    after = model.predict(images[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(after, scale_temperature(before, temperature), atol=1e-5)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    served = with_flip_tta(model).predict(images[..., None].astype(np.float32), verbose=0)
    assert log_loss(served, labels) == pytest.approx(card["validation"]["log_loss_after"], rel=1e-4)
    assert card["validation"]["log_loss_after"] < card["validation"]["log_loss_before"]
