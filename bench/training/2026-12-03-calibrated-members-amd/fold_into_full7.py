"""Folds a fitted temperature into each member of an existing full run (training.train.calibrate, the
step python -m training now takes after fitting a member) and measures the served probabilities on the
test set before and after; then refits the ensemble's combination on the folded members.

    PYTHONPATH=. python bench/training/2026-12-03-calibrated-members-amd/fold_into_full7.py MODELS OUT.json
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np

import training.models.transformer  # noqa
from training.calibration import expected_calibration_error, fit_combination, log_loss
from training.data import load_dataset
from training.ensemble import MEMBERS, load_member
from training.models.registry import with_flip_tta
from training.train import calibrate

repo, result = Path(sys.argv[1]), Path(sys.argv[2])
data = load_dataset("fashion_mnist")


def pred(m, x):
    return m.predict(x[..., None].astype(np.float32), batch_size=500, verbose=0)


out = {}
val = []
test = []
for n in MEMBERS:
    served = load_member(repo, n)[0]
    inner = [layer for layer in served.layers if isinstance(layer, keras.Model)]
    flip = bool(inner)
    base = inner[0] if flip else served
    t0 = pred(served, data.x_test)
    card = calibrate(base, flip, data.x_val, data.y_val, 0)
    served2 = with_flip_tta(base) if flip else base
    t1 = pred(served2, data.x_test)
    val.append(pred(served2, data.x_val))
    test.append(t1)
    out[n] = dict(
        T=round(card["temperature"], 3),
        acc_before=float((t0.argmax(1) == data.y_test).mean()),
        acc_after=float((t1.argmax(1) == data.y_test).mean()),
        test_ece_before=round(expected_calibration_error(t0, data.y_test), 4),
        test_ece_after=round(expected_calibration_error(t1, data.y_test), 4),
        test_logloss_before=round(log_loss(t0, data.y_test), 4),
        test_logloss_after=round(log_loss(t1, data.y_test), 4),
        validation=card["validation"],
    )
    print(n, json.dumps(out[n]), flush=True)
c, fit = fit_combination(np.stack(val, 1), data.y_val)
p = c.apply(np.stack(test, 1))
out["ensemble"] = dict(
    mode=c.mode,
    temperatures=c.temperatures,
    weights=c.weights,
    test_accuracy=float((p.argmax(1) == data.y_test).mean()),
    test_ece=expected_calibration_error(p, data.y_test),
    test_log_loss=log_loss(p, data.y_test),
)
print("ensemble", json.dumps(out["ensemble"]))
result.write_text(json.dumps(out, indent=2))
