"""Research: the full profile's CNN trained with an exponential moving average (EMA) of its weights.

python bench/training/2026-12-03-ema-amd/run_ema.py REPO MOMENTUM [CLI ARGS]   (from the repository root)

AdamW gets use_ema=True and ema_momentum=MOMENTUM (Keras swaps the averaged weights in at the end of
fit; then train.Progress puts the best validation epoch's weights back, which is what gets saved). The
script keeps the weights of each stage, so one training compares, on the same validation (5,000) and
test (10,000) images, all with the served flip averaging:
  served   - the best validation epoch's weights (what the full profile serves today)
  last     - the last step's weights
  ema      - the averaged weights, with the batch-norm statistics training ended with
  ema+bn   - the averaged weights, batch-norm statistics recomputed over 20,000 training images
"""

import sys

import keras
import numpy as np

import training.train as train_module
from training.cli import main
from training.data import load_dataset
from training.models.registry import with_flip_tta

repo, momentum = sys.argv[1], float(sys.argv[2])
LAST: list[np.ndarray] = []  # trainable weights of the last step
END: list[np.ndarray] = []  # every weight at the end of fit (EMA trainables, final batch-norm statistics)
SERVED: list[keras.Model] = []


class EmaAdamW(keras.optimizers.AdamW):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, use_ema=True, ema_momentum=momentum, **kwargs)

    def finalize_variable_values(self, var_list):
        LAST[:] = [np.array(v.numpy()) for v in var_list]
        super().finalize_variable_values(var_list)
        moved = sum(float(np.abs(raw - np.array(v.numpy())).sum()) for raw, v in zip(LAST, var_list, strict=True))
        print(f"EMA swapped in: {len(var_list)} variables, sum |last - ema| = {moved:.4g}", flush=True)


restore_best = train_module.Progress.on_train_end


def on_train_end(self, logs=None):
    END[:] = self.model.get_weights()
    restore_best(self, logs)


def keep(model):
    SERVED.append(model)
    return with_flip_tta(model)


keras.optimizers.AdamW = EmaAdamW
train_module.Progress.on_train_end = on_train_end
train_module.with_flip_tta = keep
print(f"cnn: full profile, AdamW with EMA momentum {momentum}", flush=True)
code = main(["--model", "cnn", "--profile", "full", "--repo", repo, *sys.argv[3:]])

served = SERVED[0]


def variant(trainables=None):
    model = keras.models.clone_model(served)
    model.set_weights([np.asarray(w, dtype=np.float32) if w.dtype != np.int64 else w for w in END])
    if trainables is not None:
        for variable, value in zip(model.trainable_weights, trainables, strict=True):
            variable.assign(value.astype(np.float32))
    return model


last, ema, recomputed = variant(LAST), variant(), variant()
data = load_dataset("fashion_mnist", seed=0)
train_images = data.x_train[..., None].astype(np.float32)
order = np.random.default_rng(0).permutation(len(train_images))
bns = [layer for layer in recomputed.layers if isinstance(layer, keras.layers.BatchNormalization)]
for bn in bns:
    bn.momentum = 0.0  # each training-mode call leaves that batch's statistics; averaged below
totals = [[np.zeros(bn.moving_mean.shape), np.zeros(bn.moving_variance.shape)] for bn in bns]
batches = 40
for start in range(0, batches * 500, 500):
    recomputed(train_images[order[start : start + 500]], training=True)
    for total, bn in zip(totals, bns, strict=True):
        total[0] += np.array(bn.moving_mean.numpy())
        total[1] += np.array(bn.moving_variance.numpy())
for total, bn in zip(totals, bns, strict=True):
    bn.moving_mean.assign(total[0] / batches)
    bn.moving_variance.assign(total[1] / batches)


def accuracy(model, images, labels):
    probabilities = with_flip_tta(model).predict(images[..., None].astype(np.float32), batch_size=500, verbose=0)
    return float((probabilities.argmax(axis=1) == labels).mean())


for name, model in (("served", served), ("last", last), ("ema", ema), ("ema+bn", recomputed)):
    print(
        f"RESULT momentum={momentum} {name}: validation {accuracy(model, data.x_val, data.y_val):.4f} "
        f"test {accuracy(model, data.x_test, data.y_test):.4f}",
        flush=True,
    )
sys.exit(code)
