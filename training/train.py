"""Training one model: the input pipeline, the schedule, progress, and the new version it writes."""

from __future__ import annotations

import datetime as dt
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.data import Dataset, subset
from training.models import create_model, default_config
from training.profiles import Profile
from training.repository import new_version
from training.savedmodel import write_savedmodel


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


def make_dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, training: bool, flip: bool, seed: int
) -> tf.data.Dataset:
    """uint8 [n, 28, 28] images -> batches of float32 [b, 28, 28, 1] (0..255) with one-hot labels."""
    data = tf.data.Dataset.from_tensor_slices((images[..., None], labels.astype(np.int32)))
    if training:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    augmenters: list[keras.layers.Layer] = []
    if training:
        augmenters.append(keras.layers.RandomTranslation(2 / 28, 2 / 28, fill_mode="constant", seed=seed))
        if flip:
            augmenters.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))

    def prepare(batch_images: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(batch_images, tf.float32)
        for layer in augmenters:
            x = layer(x, training=True)
        return x, tf.one_hot(batch_labels, 10)

    return data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class Progress(keras.callbacks.Callback):
    """One line per epoch with the overall ETA; keeps the best weights by validation accuracy."""

    def __init__(self, name: str, epochs: int) -> None:
        super().__init__()
        self.label, self.epochs = name, epochs
        self.best_accuracy, self.best_weights, self.best_epoch = -1.0, None, 0
        self.started = time.monotonic()
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        row = {key: float(value) for key, value in logs.items() if isinstance(value, (int, float, np.floating))}
        row.pop("learning_rate", None)
        self.history.append(row)
        elapsed = time.monotonic() - self.started
        eta = elapsed / (epoch + 1) * (self.epochs - epoch - 1)
        accuracy = row.get("val_accuracy", 0.0)
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_weights, self.best_epoch = (
                accuracy,
                self.model.get_weights(),
                epoch + 1,
            )
        print(
            f"[{self.label}] epoch {epoch + 1}/{self.epochs}  loss {row.get('loss', math.nan):.4f}  "
            f"acc {row.get('accuracy', math.nan):.4f}  val_loss {row.get('val_loss', math.nan):.4f}  "
            f"val_acc {accuracy:.4f}  {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
            flush=True,
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def train_model(name: str, data: Dataset, profile: Profile, repo: Path, seed: int) -> TrainResult:
    keras.utils.set_random_seed(seed)
    started = time.monotonic()
    commit = git_commit()  # the code that trains, not whatever is checked out when the run ends
    x_train, y_train = data.x_train, data.y_train
    if profile.train_size:
        x_train, y_train = subset(x_train, y_train, profile.train_size, seed)
    x_val, y_val = data.x_val, data.y_val
    if profile.validation_size:
        x_val, y_val = subset(x_val, y_val, profile.validation_size, seed)
    x_test, y_test = data.x_test, data.y_test
    if profile.test_size:
        x_test, y_test = subset(x_test, y_test, profile.test_size, seed)

    flip = data.name == "fashion_mnist" and profile.augment  # mirrored digits are not digits
    train_batches = make_dataset(x_train, y_train, profile.batch_size, profile.augment, flip, seed)
    val_batches = make_dataset(x_val, y_val, 512, False, False, seed)
    epochs = profile.epochs[name]
    steps = math.ceil(len(x_train) / profile.batch_size)
    warmup = min(profile.warmup_epochs * steps, max(1, epochs * steps // 4))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=profile.learning_rate[name] / 10,
        decay_steps=max(1, epochs * steps - warmup),
        warmup_target=profile.learning_rate[name],
        warmup_steps=warmup,
        alpha=0.01,
    )
    config = default_config(name)
    model = create_model(name, config)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=profile.weight_decay[name]),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=profile.label_smoothing),
        metrics=["accuracy"],
    )
    print(
        f"[{name}] {model.count_params():,} parameters; training on {len(x_train):,} images, "
        f"validating on {len(x_val):,}, {epochs} epochs, profile {profile.name}",
        flush=True,
    )
    progress = Progress(name, epochs)
    model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=epochs,
        callbacks=[progress],
        verbose=1 if sys.stdout.isatty() else 0,
    )
    probabilities = model.predict(x_test[..., None].astype(np.float32), batch_size=512, verbose=0)
    predicted = probabilities.argmax(axis=1)
    test_accuracy = float((predicted == y_test).mean())
    seconds = time.monotonic() - started
    card: dict[str, Any] = {
        "name": name,
        "kind": "member",
        "dataset": {
            "name": data.name,
            "directory": str(data.directory),
            "train_images": len(x_train),
            "validation_images": len(x_val),
            "test_images": len(x_test),
        },
        "input_contract": INPUT_CONTRACT,
        "labels": list(data.class_names),
        "metrics": {
            "test_accuracy": test_accuracy,
            "best_validation_accuracy": progress.best_accuracy,
            "best_epoch": progress.best_epoch,
        },
        "history": progress.history,
        "model_config": config.to_dict(),
        "training": {
            "profile": profile.to_dict(),
            "seed": seed,
            "seconds": round(seconds, 1),
            "parameters": model.count_params(),
        },
        "versions": library_versions(),
        "git_commit": commit,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with new_version(repo, name) as (version, staging):
        card["version"] = version
        write_savedmodel(model, staging, list(data.class_names), card)
        model.save(staging / "assets.extra" / "keras_model.keras")
    print(
        f"[{name}] test accuracy {test_accuracy:.4f} on {len(x_test):,} images; "
        f"wrote {repo / name / str(version)} in {seconds:.0f}s",
        flush=True,
    )
    return TrainResult(name, version, repo / name / str(version), test_accuracy, len(x_test), seconds)


INPUT_CONTRACT = {
    "signatures": {
        "serving_default": {
            "inputs": {"image": {"dtype": "float32", "shape": [-1, 28, 28, 1], "range": "0..255 raw pixels"}},
            "outputs": {
                "probabilities": {"dtype": "float32", "shape": [-1, 10]},
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
