"""Richer combinations than one weight per member, fitted on the validation split: 5-fold cross-validation
on it, then test accuracy of the fit on all of it.

    PYTHONPATH=. python stacking.py PREDICTIONS.npz   (from the repository root)
"""
import os; os.environ["TF_CPP_MIN_LOG_LEVEL"]="3"
import numpy as np, tensorflow as tf, sys
from training.data import load_dataset
data = load_dataset("fashion_mnist")
d = np.load(sys.argv[1])  # from lstm_flip_averaging.py
names = ["cnn", "lstm", "transformer"]
V = np.log(np.clip(np.stack([d[f"val_{n}"] for n in names], 1), 1e-7, 1)); T = np.log(np.clip(np.stack([d[f"test_{n}"] for n in names], 1), 1e-7, 1))
yv, yt = data.y_val, data.y_test
def fit(kind, X, y, l2, steps=600):
    M, C = X.shape[1], X.shape[2]
    X = tf.constant(X, tf.float32); y = tf.constant(y.astype(np.int64))
    if kind == "member": a = tf.Variable(tf.ones([M, 1]) / M); b = tf.Variable(tf.zeros([C]))
    elif kind == "class": a = tf.Variable(tf.ones([M, C]) / M); b = tf.Variable(tf.zeros([C]))
    else: a = tf.Variable(tf.eye(C)[None].numpy().repeat(M, 0) / M); b = tf.Variable(tf.zeros([C]))
    def logits(X):
        if kind == "full": return tf.einsum("nmc,mcd->nd", X, a) + b
        return tf.reduce_sum(X * a[None], 1) + b
    opt = tf.keras.optimizers.Adam(0.05)
    prior = tf.ones_like(a) / M if kind != "full" else tf.constant(np.eye(C)[None].repeat(M, 0) / M, tf.float32)
    for _ in range(steps):
        with tf.GradientTape() as g:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits(X))) + l2 * tf.reduce_sum((a - prior) ** 2)
        opt.apply_gradients(zip(g.gradient(loss, [a, b]), [a, b]))
    return lambda Z: logits(tf.constant(Z, tf.float32)).numpy()
rng = np.random.default_rng(0); folds = rng.permutation(len(yv)) % 5
for kind, l2 in [("member", 0), ("class", 0), ("class", 1e-3), ("class", 1e-2), ("full", 1e-3), ("full", 1e-2)]:
    cv = []
    for k in range(5):
        f = fit(kind, V[folds != k], yv[folds != k], l2, 300)
        cv.append((f(V[folds == k]).argmax(1) == yv[folds == k]).mean())
    f = fit(kind, V, yv, l2)
    print(kind, l2, "cv val", round(float(np.mean(cv)), 4), "test", (f(T).argmax(1) == yt).mean(), flush=True)
