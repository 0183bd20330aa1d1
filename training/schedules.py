"""The one-cycle learning-rate schedule: a linear rise to the peak, then a cosine fall to nearly zero."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tensorgate")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """From ``peak / 25`` up to ``peak`` over the first ``warmup_fraction`` of the steps, then a half cosine
    down to ``peak / 1000`` at ``total_steps`` (and flat after)."""

    def __init__(self, peak: float, total_steps: int, warmup_fraction: float = 0.2) -> None:
        if peak <= 0 or total_steps < 1 or not 0 <= warmup_fraction < 1:
            raise ValueError(
                f"one-cycle needs peak > 0, total_steps >= 1, 0 <= warmup_fraction < 1; got "
                f"{peak}, {total_steps}, {warmup_fraction}"
            )
        self.peak, self.total_steps, self.warmup_fraction = peak, total_steps, warmup_fraction
        self.warmup_steps = max(1, round(total_steps * warmup_fraction))

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        start, floor = self.peak / 25, self.peak / 1000
        rising = start + (self.peak - start) * step / self.warmup_steps
        progress = ops.clip((step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0.0, 1.0)
        falling = floor + (self.peak - floor) * 0.5 * (1 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction}
