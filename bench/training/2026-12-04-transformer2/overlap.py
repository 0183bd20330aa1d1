"""How alike are the members' mistakes? For each ensemble repository given, runs its served ensemble on
the 10,000 test images and counts, per member, its errors and how many of them the CNN shares.

    PYTHONPATH=. python bench/training/2026-12-04-transformer2/overlap.py SEED REPO [REPO ...]
"""

import sys
from pathlib import Path

import tensorflow as tf

from training.data import load_dataset
from training.ensemble import MEMBERS
from training.evaluate import _run
from training.repository import latest_version

seed, repos = int(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]]
data = load_dataset("fashion_mnist", None, seed=seed)
for repo in repos:
    serve = tf.saved_model.load(str(repo / "ensemble" / str(latest_version(repo / "ensemble"))))
    outputs = _run(serve.signatures["serving_default"], data.x_test)
    members = outputs["member_probabilities"].argmax(-1)
    wrong = members != data.y_test[:, None]
    ensemble_wrong = outputs["class_id"] != data.y_test
    cnn = wrong[:, 0]
    parts = [
        f"{name} {int(wrong[:, m].sum())} wrong, {int((wrong[:, m] & cnn).sum())} shared with the cnn"
        for m, name in enumerate(MEMBERS)
    ]
    print(
        f"{repo}: {'; '.join(parts)}; all three wrong {int(wrong.all(axis=1).sum())}; "
        f"ensemble {int(ensemble_wrong.sum())} wrong"
    )
