"""Milliseconds per training step at batch 128 for each member, in this process's oneDNN setting.

Usage, from the repository root:
    TF_ENABLE_ONEDNN_OPTS=0|1 python <this file> float32|mixed_bfloat16 cnn,lstm,transformer
"""

import sys
import time

import keras
import numpy as np

from training import precision
from training.models.registry import create_model, default_config

policy = sys.argv[1]
keras.mixed_precision.set_global_policy(policy)
x = np.random.rand(128, 28, 28, 1).astype("float32") * 255
y = np.random.randint(0, 10, 128)
for name in sys.argv[2].split(","):
    config = default_config(name)
    if name == "cnn":
        config = config.with_overrides(width=48)  # the full profile's CNN
    model = create_model(name, config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    for _ in range(5):
        model.train_on_batch(x, y)
    times = []
    for _ in range(15):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"{name} {policy} onednn={precision.onednn_enabled()} "
        f"median {1000 * times[len(times) // 2]:.0f} ms/step, min {1000 * times[0]:.0f}",
        flush=True,
    )
