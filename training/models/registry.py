from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import keras

# Fashion-MNIST pixel statistics (0..1 scale), used to standardise inputs inside every graph.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; saved in the model card next to the weights."""

    name: str
    width: int = 32  # base channel count / hidden size, meaning per model
    depth: int = 2  # blocks per stage / recurrent layers / encoder blocks
    dropout: float = 0.2
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def standardise(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """Raw 0..255 pixels -> zero-mean unit-variance, as part of the exported graph."""
    return keras.layers.Rescaling(1.0 / (255.0 * PIXEL_STD), offset=-PIXEL_MEAN / PIXEL_STD, name="standardise")(
        inputs
    )


def image_input() -> keras.KerasTensor:
    return keras.Input(shape=(28, 28, 1), dtype="float32", name="image")


def _builders() -> dict[str, Callable[[ModelConfig], keras.Model]]:
    from training.models.cnn import build_cnn
    from training.models.lstm import build_lstm
    from training.models.transformer import build_transformer

    return {"cnn": build_cnn, "lstm": build_lstm, "transformer": build_transformer}


# `ensemble` is built from trained members (training.ensemble), not from a config.
MODEL_NAMES = ("cnn", "lstm", "transformer", "ensemble")
TRAINABLE_NAMES = ("cnn", "lstm", "transformer")

DEFAULT_CONFIGS: dict[str, ModelConfig] = {
    "cnn": ModelConfig("cnn", width=32, depth=2, dropout=0.2),
    "lstm": ModelConfig("lstm", width=128, depth=1, dropout=0.3),
    "transformer": ModelConfig("transformer", width=64, depth=3, dropout=0.1, extra={"heads": 4, "mlp_ratio": 2}),
}


def default_config(name: str) -> ModelConfig:
    if name not in DEFAULT_CONFIGS:
        raise ValueError(f"unknown model {name!r}; trainable models: {', '.join(TRAINABLE_NAMES)}")
    return DEFAULT_CONFIGS[name]


def create_model(name: str, config: ModelConfig | None = None) -> keras.Model:
    """Build an untrained model by name. Its output is softmax probabilities [batch, 10]."""
    builders = _builders()
    if name not in builders:
        hint = " (build the ensemble from trained members with --model ensemble)" if name == "ensemble" else ""
        raise ValueError(f"unknown model {name!r}; trainable models: {', '.join(builders)}{hint}")
    return builders[name](config or default_config(name))
