from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import keras
from keras import ops

from training.names import MODEL_NAMES, TRAINABLE_NAMES

# Fashion-MNIST pixel statistics (0..1 scale); training replaces them with the training split's own.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; saved in the model card next to the weights."""

    name: str
    width: int = 32  # base channel count / hidden size, meaning per model
    depth: int = 2  # blocks per stage / recurrent layers / encoder blocks
    dropout: float = 0.2
    classes: int = 10
    pixel_mean: float = PIXEL_MEAN  # of the training images, 0..1 scale: the graph standardises with them
    pixel_std: float = PIXEL_STD
    flip_tta: bool = False  # served model averages the image and its mirror image (test-time augmentation)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> ModelConfig:
        unknown = set(overrides) - set(self.to_dict())
        if unknown:
            raise ValueError(f"{self.name}: unknown model settings {sorted(unknown)}")
        extra = {**self.extra, **overrides.pop("extra", {})}
        return replace(self, **overrides, extra=extra)


def standardise(inputs: keras.KerasTensor, config: ModelConfig) -> keras.KerasTensor:
    """Raw 0..255 pixels -> zero-mean unit-variance, as part of the exported graph."""
    scale = 1.0 / (255.0 * config.pixel_std)
    return keras.layers.Rescaling(scale, offset=-config.pixel_mean / config.pixel_std, name="standardise")(inputs)


def image_input() -> keras.KerasTensor:
    return keras.Input(shape=(28, 28, 1), dtype="float32", name="image")


def classifier(x: keras.KerasTensor, config: ModelConfig) -> keras.KerasTensor:
    """The last layer: softmax probabilities, computed in float32 whatever the training precision."""
    return keras.layers.Dense(config.classes, activation="softmax", dtype="float32", name="probabilities")(x)


@keras.saving.register_keras_serializable(package="tensorgate")
class MirrorImage(keras.layers.Layer):
    """Flips [batch, height, width, channels] images left to right."""

    def call(self, inputs: Any) -> Any:
        return ops.flip(inputs, axis=2)


def with_flip_tta(model: keras.Model) -> keras.Model:
    """The served model: the mean of the trained model's answers on the image and on its mirror image."""
    inputs = image_input()
    mirrored = MirrorImage(name="mirror_image")(inputs)
    averaged = keras.layers.Average(name="flip_average")([model(inputs), model(mirrored)])
    return keras.Model(inputs, averaged, name=model.name)


__all__ = ["MODEL_NAMES", "TRAINABLE_NAMES", "ModelConfig", "create_model", "default_config"]


def _builders() -> dict[str, Callable[[ModelConfig], keras.Model]]:
    from training.models.cnn import build_cnn
    from training.models.lstm import build_lstm
    from training.models.transformer import build_transformer

    return {"cnn": build_cnn, "lstm": build_lstm, "transformer": build_transformer}



DEFAULT_CONFIGS: dict[str, ModelConfig] = {
    "cnn": ModelConfig("cnn", width=32, depth=2, dropout=0.2, flip_tta=True),
    "lstm": ModelConfig("lstm", width=128, depth=1, dropout=0.3, extra={"front": (32, 64)}),
    "transformer": ModelConfig(
        "transformer",
        width=64,
        depth=3,
        dropout=0.1,
        flip_tta=True,
        extra={"heads": 4, "mlp_ratio": 2, "tokenizer_depth": 2},
    ),
}


def default_config(name: str) -> ModelConfig:
    if name not in DEFAULT_CONFIGS:
        raise ValueError(f"unknown model {name!r}; trainable models: {', '.join(TRAINABLE_NAMES)}")
    return DEFAULT_CONFIGS[name]


def create_model(name: str, config: ModelConfig | None = None) -> keras.Model:
    """Build an untrained model by name. Its output is softmax probabilities [batch, classes]."""
    builders = _builders()
    if name not in builders:
        hint = " (build the ensemble from trained members with --model ensemble)" if name == "ensemble" else ""
        raise ValueError(f"unknown model {name!r}; trainable models: {', '.join(builders)}{hint}")
    return builders[name](config or default_config(name))
