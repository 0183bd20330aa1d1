"""Seconds per training step of the patch transformers in vit_patches.py, on random images (timing only:
one warm-up fit of 10 batches, then 60 batches of 128 timed; an epoch of the full profile is 430).

    PYTHONPATH=. python bench/training/2026-12-05-vit-patches/speed.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import vit_patches

from training.models.registry import default_config

for width, depth in ((64, 3), (96, 4)):
    config = default_config("transformer").with_overrides(
        width=width, depth=depth, classes=10, pixel_mean=0.28, pixel_std=0.35
    )
    model = vit_patches.build_vit(config)
    model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((128 * 60, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 128 * 60)
    model.fit(x[: 128 * 10], y[: 128 * 10], batch_size=128, verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=128, verbose=0)
    step = (time.perf_counter() - started) / 60
    print(
        f"width {width} depth {depth}: {model.count_params():,} parameters, "
        f"{step:.4f} s a step, {step * 430:.0f} s an epoch"
    )
