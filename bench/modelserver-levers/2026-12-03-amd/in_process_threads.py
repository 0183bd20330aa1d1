"""In-process: the SavedModel runtime with inter-op threads = cores (today) vs -1 (ops in the caller's thread)."""
import sys, time, threading, numpy as np, psutil
from pathlib import Path
from serving.modelserver.runtimes import RuntimeOptions, savedmodel
repo = Path(sys.argv[1]); model = sys.argv[2]; inter = int(sys.argv[3]); intra = int(sys.argv[4]) if len(sys.argv) > 4 else 1
vd = max((repo / model).iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
m = savedmodel.load(vd, RuntimeOptions(intra_op_threads=intra, inter_op_threads=inter, interpreters=1))
sig = m.signatures["serving_default"]; inp = next(iter(sig.inputs)); outs = sorted(sig.outputs)
rng = np.random.default_rng(0); proc = psutil.Process()
def cpu(): t = proc.cpu_times(); return t.user + t.system
res = []
for b, threads in ((1, 1), (16, 1), (64, 1), (1, 4), (16, 2)):
    x = rng.random((b, 28, 28, 1), dtype=np.float32)
    for _ in range(10): m.predict(sig, {inp: x}, outs)
    n = max(30, 1200 // b) // threads
    def loop():
        for _ in range(n): m.predict(sig, {inp: x}, outs)
    c0 = cpu(); t0 = time.perf_counter()
    ts = [threading.Thread(target=loop) for _ in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    wall = time.perf_counter() - t0; c = cpu() - c0; calls = n * threads
    res.append(f"b{b}x{threads}t: {calls*b/wall:6.0f} img/s, {1e6*c/calls/b:5.0f} us CPU/img")
print(f"{model} intra {intra} inter {inter:2d}: " + " | ".join(res), flush=True)
