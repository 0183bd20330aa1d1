import os, sys, time, numpy as np
from pathlib import Path
from serving.modelserver.runtimes import RuntimeOptions
from serving.modelserver.runtimes import savedmodel
repo = Path(sys.argv[1]); model = sys.argv[2] if len(sys.argv) > 2 else "cnn"
vd = max((repo / model).iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
m = savedmodel.load(vd, RuntimeOptions(intra_op_threads=1, inter_op_threads=2, interpreters=1))
sig = m.signatures["serving_default"]; inp = next(iter(sig.inputs))
outs = sorted(sig.outputs)
rng = np.random.default_rng(0)
print("env", os.environ.get("TF_XLA_FLAGS"), model)
for b in (1, 4, 16, 64):
    x = rng.random((b, 28, 28, 1), dtype=np.float32) if sig.inputs[inp].dtype == 1 else None
    t = time.perf_counter(); m.predict(sig, {inp: x}, outs); first = time.perf_counter() - t
    n = max(20, 400 // b); t = time.perf_counter()
    for _ in range(n): m.predict(sig, {inp: x}, outs)
    dt = (time.perf_counter() - t) / n
    print(f"batch {b}: first call {first*1000:.0f} ms, then {dt*1000:.2f} ms/call, {b/dt:.0f} images/s", flush=True)
