"""Flip averaging for an existing LSTM, and the ensemble refitted with it; saves every member's validation and
test probabilities for stacking.py.

    PYTHONPATH=. python lstm_flip_averaging.py MODELS PREDICTIONS.npz   (from the repository root)
"""
import sys, numpy as np, keras
import training.models.transformer  # noqa
from training.data import load_dataset
from training.ensemble import load_member, MEMBERS
from training.calibration import fit_combination
from training.models.registry import with_flip_tta
repo = __import__("pathlib").Path(sys.argv[1])
data = load_dataset("fashion_mnist")
def pred(m, x): return m.predict(x[..., None].astype(np.float32), batch_size=500, verbose=0)
members = [load_member(repo, n)[0] for n in MEMBERS]
print([m.name for m in members], [len(m.layers) for m in members])
val = {}; test = {}
for n, m in zip(MEMBERS, members):
    val[n] = pred(m, data.x_val); test[n] = pred(m, data.x_test)
    print(n, "test", (test[n].argmax(1) == data.y_test).mean(), "val", (val[n].argmax(1) == data.y_val).mean(), flush=True)
lt = with_flip_tta(members[1])
val["lstm_tta"] = pred(lt, data.x_val); test["lstm_tta"] = pred(lt, data.x_test)
print("lstm_tta test", (test["lstm_tta"].argmax(1) == data.y_test).mean(), "val", (val["lstm_tta"].argmax(1) == data.y_val).mean())
for combo in (["cnn", "lstm", "transformer"], ["cnn", "lstm_tta", "transformer"]):
    v = np.stack([val[n] for n in combo], 1); t = np.stack([test[n] for n in combo], 1)
    c, fit = fit_combination(v, data.y_val)
    p = c.apply(t)
    print(combo, c.mode, [round(x, 3) for x in c.temperatures], [round(x, 3) for x in c.weights], "test", (p.argmax(1) == data.y_test).mean(), "val", fit)
np.savez(sys.argv[2], **{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()})
