"""Training one model: the input pipeline, the schedule, progress, and the new version it writes."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.calibration import expected_calibration_error, fit_temperature, log_loss, scale_temperature
from training.data import Dataset, subset
from training.models import ModelConfig, create_model, default_config
from training.models.registry import with_flip_tta
from training.profiles import Profile, Recipe
from training.repository import new_version
from training.savedmodel import write_savedmodel
from training.schedules import OneCycle


@dataclass(frozen=True)
class TrainResult:
    name: str
    version: int
    path: Path
    test_accuracy: float
    test_size: int
    seconds: float


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def duration(seconds: float) -> str:
    """73.4 -> '1m 13s'; 4.2 -> '4.2s'."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def random_erase(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Random erasing (arXiv 1708.04896): with ``probability``, blank one rectangle of each image.

    The rectangle's sides are 4 to 13 pixels, its centre anywhere in the image (cut at the edges), its
    pixels set to 0, the background of these images.
    """
    batch = tf.shape(images)[0]
    height = tf.random.uniform([batch], 4, 14, tf.int32)
    width = tf.random.uniform([batch], 4, 14, tf.int32)
    centre_y = tf.random.uniform([batch], 0, 28, tf.int32)
    centre_x = tf.random.uniform([batch], 0, 28, tf.int32)
    positions = tf.range(28)[None, :]
    rows = (positions >= (centre_y - height // 2)[:, None]) & (positions < (centre_y + height // 2)[:, None])
    columns = (positions >= (centre_x - width // 2)[:, None]) & (positions < (centre_x + width // 2)[:, None])
    inside = tf.cast(rows[:, :, None] & columns[:, None, :], images.dtype)
    chosen = tf.cast(tf.random.uniform([batch]) < probability, images.dtype)[:, None, None]
    return images * (1 - inside * chosen)[..., None]


def make_dataset(
    images: np.ndarray, labels: np.ndarray, classes: int, batch_size: int, augment: Recipe | None, seed: int
) -> tf.data.Dataset:
    """uint8 [n, 28, 28] images -> batches of float32 [b, 28, 28, 1] (0..255) with one-hot labels.

    ``augment``: the recipe whose shifts and flips to apply (training), or None (evaluation).
    """
    pictures = tf.constant(images[..., None])
    targets = tf.constant(labels.astype(np.int32))
    # Shuffle indices, not images: a buffer of ints fills in a blink, where one of 55,000 image tensors
    # was filled element by element at the start of every epoch; each batch is then one gather.
    order = tf.data.Dataset.range(len(images))
    if augment is not None:
        order = order.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = order.batch(batch_size).map(lambda index: (tf.gather(pictures, index), tf.gather(targets, index)))
    augmenters: list[keras.layers.Layer] = []
    if augment is not None and augment.shift_pixels:
        shift = augment.shift_pixels / 28
        augmenters.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed))
    if augment is not None and augment.flip:
        augmenters.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))

    def prepare(batch_images: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(batch_images, tf.float32)
        for layer in augmenters:
            x = layer(x, training=True)
        if augment is not None and augment.erase:
            x = random_erase(x, augment.erase)
        return x, tf.one_hot(batch_labels, classes)

    # A fixed pipeline, no tf.data autotuning: in TF 2.21 deleting an autotuned iterator waits for its
    # tuning thread to wake up by itself, which it does only when its current period (growing to 60 s)
    # ends. Keras makes a new iterator every epoch, so epochs stalled for 10-60 s with the CPU idle (gdb:
    # ~RootDataset::Iterator waiting on Model::OptimizeLoop), and each fit returned up to a minute late.
    # Two parallel batches ahead are all a training step on these machines can use.
    options = tf.data.Options()
    options.autotune.enabled = False
    ahead = max(2, min(4, os.cpu_count() or 1))
    return data.map(prepare, num_parallel_calls=ahead).prefetch(ahead).with_options(options)


class Progress(keras.callbacks.Callback):
    """One line per epoch with its time and the overall ETA; keeps the best weights by validation accuracy."""

    def __init__(self, name: str, epochs: int) -> None:
        super().__init__()
        self.label, self.epochs = name, epochs
        self.best_accuracy, self.best_weights, self.best_epoch = -1.0, None, 0
        self.started = self.epoch_started = time.monotonic()
        self.history: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        row = {key: float(value) for key, value in logs.items() if isinstance(value, (int, float, np.floating))}
        row.pop("learning_rate", None)
        now = time.monotonic()
        row["seconds"] = round(now - self.epoch_started, 1)
        self.history.append(row)
        elapsed = now - self.started
        eta = elapsed / (epoch + 1) * (self.epochs - epoch - 1)
        accuracy = row.get("val_accuracy", 0.0)
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_weights, self.best_epoch = accuracy, self.model.get_weights(), epoch + 1
        print(
            f"[{self.label}] epoch {epoch + 1}/{self.epochs} in {duration(row['seconds'])}  "
            f"loss {row.get('loss', math.nan):.4f}  acc {row.get('accuracy', math.nan):.4f}  "
            f"val_loss {row.get('val_loss', math.nan):.4f}  val_acc {accuracy:.4f}  "
            f"({duration(elapsed)} elapsed, about {duration(eta)} to go)",
            flush=True,
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def model_config(name: str, data: Dataset, recipe: Recipe, x_train: np.ndarray) -> ModelConfig:
    """The default architecture, resized by the recipe, for this dataset's classes and pixel statistics."""
    config = default_config(name).with_overrides(**recipe.model)
    # Mean and spread from the histogram of the 256 pixel values: exact, and no float copy of every pixel.
    counts = np.bincount(x_train.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(counts.size, dtype=np.float64) / 255.0
    mean = float(counts @ values / counts.sum())
    std = math.sqrt(float(counts @ (values - mean) ** 2 / counts.sum()))
    return config.with_overrides(
        classes=data.classes,
        pixel_mean=round(mean, 4),
        pixel_std=round(std, 4),
        # mirror images are averaged in only where training showed them (else they are foreign to the model)
        flip_tta=config.flip_tta and data.mirror_safe and recipe.flip,
    )


def train_model(
    name: str, data: Dataset, profile: Profile, repo: Path, seed: int, precision: str = "float32"
) -> TrainResult:
    """Train ``name`` with the profile's recipe and write it as the next version in ``repo``.

    ``precision``: the Keras dtype policy for training (``float32`` or ``mixed_bfloat16``); the saved
    model always computes in float32.
    """
    keras.utils.set_random_seed(seed)
    started = time.monotonic()
    commit = git_commit()  # the code that trains, not whatever is checked out when the run ends
    recipe = profile.recipe(name)
    x_train, y_train = data.x_train, data.y_train
    if profile.train_size:
        x_train, y_train = subset(x_train, y_train, profile.train_size, seed)
    x_val, y_val = data.x_val, data.y_val
    if profile.validation_size:
        x_val, y_val = subset(x_val, y_val, profile.validation_size, seed)
    x_test, y_test = data.x_test, data.y_test
    if profile.test_size:
        x_test, y_test = subset(x_test, y_test, profile.test_size, seed)

    recipe = recipe if data.mirror_safe else replace(recipe, flip=False)
    train_batches = make_dataset(x_train, y_train, data.classes, recipe.batch_size, recipe, seed)
    val_batches = make_dataset(x_val, y_val, data.classes, 500, None, seed)
    config = model_config(name, data, recipe, x_train)
    precision = precision if recipe.bfloat16 else "float32"
    keras.mixed_precision.set_global_policy(precision)
    try:
        trained = create_model(name, config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    steps = math.ceil(len(x_train) / recipe.batch_size)
    trained.compile(
        optimizer=keras.optimizers.AdamW(
            OneCycle(recipe.learning_rate, recipe.epochs * steps, recipe.warmup_fraction),
            weight_decay=recipe.weight_decay,
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
    )
    print(
        f"[{name}] training: {trained.count_params():,} parameters, {len(x_train):,} images, "
        f"{recipe.epochs} epochs of {steps} steps, validating on {len(x_val):,} ({precision})",
        flush=True,
    )
    progress = Progress(name, recipe.epochs)
    trained.fit(
        train_batches,
        validation_data=val_batches,
        epochs=recipe.epochs,
        callbacks=[progress],
        shuffle=False,  # the dataset shuffles itself
        verbose=1 if sys.stdout.isatty() else 0,
    )
    training_seconds = time.monotonic() - started

    # The served model computes in float32 (fast on every CPU), with the trained weights.
    stage = time.monotonic()
    model = create_model(name, config)
    model.set_weights(trained.get_weights())
    calibration = calibrate(model, config.flip_tta, x_val, y_val, data.seed)
    if config.flip_tta:
        model = with_flip_tta(model)
    probabilities = model.predict(x_test[..., None].astype(np.float32), batch_size=500, verbose=0)
    test_accuracy = float((probabilities.argmax(axis=1) == y_test).mean())
    tta = " (mean over the image and its mirror image)" if config.flip_tta else ""
    print(
        f"[{name}] test accuracy {test_accuracy:.4f} on {len(x_test):,} images{tta} "
        f"in {duration(time.monotonic() - stage)}; probabilities calibrated with T={calibration['temperature']:.3f} "
        f"(validation log-loss {calibration['validation']['log_loss_before']:.4f} -> "
        f"{calibration['validation']['log_loss_after']:.4f})",
        flush=True,
    )
    card: dict[str, Any] = {
        "name": name,
        "kind": "member",
        "dataset": {
            "name": data.name,
            "directory": str(data.directory),
            "train_images": len(x_train),
            "validation_images": len(x_val),
            "test_images": len(x_test),
            "validation_seed": data.seed,
        },
        "input_contract": input_contract(data.classes),
        "labels": list(data.class_names),
        "metrics": {
            "test_accuracy": test_accuracy,
            "best_validation_accuracy": progress.best_accuracy,
            "best_epoch": progress.best_epoch,
        },
        "history": progress.history,
        "calibration": calibration,
        "model_config": config.to_dict(),
        "training": {
            "profile": profile.name,
            "recipe": recipe.to_dict(),
            "train_size": profile.train_size,
            "precision": precision,
            "seed": seed,
            "fit_seconds": round(training_seconds, 1),
            "seconds": round(time.monotonic() - started, 1),  # until saving: fit, test, model card
            "parameters": trained.count_params(),
        },
        "versions": library_versions(),
        "git_commit": commit,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    stage = time.monotonic()
    with new_version(repo, name) as (version, staging):
        card["version"] = version
        write_savedmodel(model, staging, list(data.class_names), card)
        model.save(staging / "assets.extra" / "keras_model.keras")
    seconds = time.monotonic() - started
    print(
        f"[{name}] saved {repo / name / str(version)} in {duration(time.monotonic() - stage)}; "
        f"{name} done in {duration(seconds)}",
        flush=True,
    )
    return TrainResult(name, version, repo / name / str(version), test_accuracy, len(x_test), seconds)


def calibrate(model: keras.Model, flip: bool, x_val: np.ndarray, y_val: np.ndarray, seed: int) -> dict[str, Any]:
    """Temperature scaling, folded into the served model: one temperature T fitted on the validation split
    (minimum log-loss), then the last layer's kernel and bias divided by T, so the model serves
    softmax(logits / T). Class order, and so ``class_id``, is unchanged for a single view; with flip
    averaging the mean of the two scaled views is what the fit scored. Returns the model card's entry."""
    images = x_val[..., None].astype(np.float32)
    views = [model.predict(images, batch_size=500, verbose=0)]
    if flip:
        views.append(model.predict(images[:, :, ::-1], batch_size=500, verbose=0))
    temperature = fit_temperature(views, y_val)
    before = np.mean(views, axis=0)
    after = np.mean([scale_temperature(view, temperature) for view in views], axis=0)
    layer = model.get_layer("probabilities")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / temperature, bias / temperature])
    return {
        "temperature": temperature,
        "method": "temperature scaling: the last layer's kernel and bias divided by the temperature",
        "fitted_on": f"validation split ({len(y_val):,} images, seed {seed})",
        "validation": {
            "log_loss_before": log_loss(before, y_val),
            "log_loss_after": log_loss(after, y_val),
            "ece_before": expected_calibration_error(before, y_val),
            "ece_after": expected_calibration_error(after, y_val),
        },
    }


def input_contract(classes: int) -> dict[str, Any]:
    return {
        "signatures": {
            "serving_default": {
                "inputs": {"image": {"dtype": "float32", "shape": [-1, 28, 28, 1], "range": "0..255 raw pixels"}},
                "outputs": {
                    "probabilities": {"dtype": "float32", "shape": [-1, classes]},
                    "class_id": {"dtype": "int64", "shape": [-1]},
                },
            },
            "serving_bytes": {
                "inputs": {
                    "image_bytes": {
                        "dtype": "string",
                        "shape": [-1],
                        "format": "PNG or JPEG (also GIF, BMP, WebP); prepared as docs/pictures.md",
                    }
                },
                "outputs": "as serving_default",
            },
        }
    }
