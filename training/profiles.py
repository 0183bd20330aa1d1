"""Training profiles: `quick` (small subset, minutes: tests and `make run`) and `full` (accuracy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    epochs: dict[str, int]
    learning_rate: dict[str, float]
    weight_decay: dict[str, float]
    train_size: int | None = None  # None: the whole training split
    validation_size: int | None = None
    test_size: int | None = None  # evaluation at the end of training; None: all 10,000
    batch_size: int = 256
    label_smoothing: float = 0.1
    augment: bool = True
    warmup_epochs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, epochs: int | None = None, train_size: int | None = None) -> Profile:
        profile = self
        if epochs is not None:
            profile = replace(profile, epochs=dict.fromkeys(profile.epochs, epochs))
        if train_size is not None:
            profile = replace(
                profile,
                train_size=train_size,
                validation_size=min(profile.validation_size or train_size, max(200, train_size // 3)),
                test_size=min(profile.test_size or 10_000, max(500, train_size)),
            )
        return profile


_LR = {"cnn": 3e-3, "lstm": 3e-3, "transformer": 2e-3}
_WD = {"cnn": 1e-2, "lstm": 1e-4, "transformer": 5e-2}

PROFILES = {
    "quick": Profile(
        "quick",
        epochs={"cnn": 3, "lstm": 3, "transformer": 3},
        learning_rate=_LR,
        weight_decay=_WD,
        train_size=3_000,
        validation_size=1_000,
        test_size=2_000,
        batch_size=64,
    ),
    # Sized for under an hour on 2 idle CPU cores. Epochs measured there at batch 256 on 55,000 images:
    # CNN 110-128 s, LSTM 38 s, Transformer about 100 s, so 11/14/11 epochs take about 50 minutes
    # plus validation, test and saving.
    "full": Profile(
        "full",
        epochs={"cnn": 11, "lstm": 14, "transformer": 11},
        learning_rate=_LR,
        weight_decay=_WD,
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]
