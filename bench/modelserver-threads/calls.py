"""Wall and CPU time per predict call of one model server runtime, in-process, at batch 1 and 32.

    python bench/modelserver-threads/calls.py MODEL_VERSION_DIR RUNTIME INTRA INTER [spin]

RUNTIME is tensorflow (a SavedModel) or onnx (model.onnx); INTRA / INTER are the thread counts the
model server would pass (``RuntimeOptions``); ``spin`` lets TensorFlow's idle threads spin (the model
server turns spinning off). One setting per process: TensorFlow builds its thread pools once, from the
first session's settings. Prints one JSON line: per batch size, three rounds of (wall us, CPU us) per call.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from serving.modelserver import runtimes
from serving.modelserver.runtimes.base import RuntimeOptions


def main() -> None:
    path, runtime, intra, inter = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spin = sys.argv[5:] == ["spin"]
    if spin:
        import tensorflow as tf

        plain = tf.compat.v1.Session.__init__

        def spinning(self, target="", graph=None, config=None):  # type: ignore[no-untyped-def]
            if config is not None:
                config.experimental.disable_thread_spinning = False
            plain(self, target, graph, config)

        tf.compat.v1.Session.__init__ = spinning
    model = runtimes.load(runtime, path, RuntimeOptions(intra_op_threads=intra, inter_op_threads=inter))
    signature = model.signatures["serving_default"]
    alias, outputs = next(iter(signature.inputs)), sorted(signature.outputs)
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"model": str(path), "runtime": runtime, "intra": intra, "inter": inter, "spin": spin}
    for batch, calls in ((1, 3000), (32, 300)):
        images = rng.random((batch, 28, 28, 1), dtype=np.float32)
        for _ in range(50):
            model.predict(signature, {alias: images}, outputs)
        rounds = []
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                model.predict(signature, {alias: images}, outputs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rounds.append((round(wall / calls * 1e6, 1), round(cpu / calls * 1e6, 1)))
        result[f"batch{batch}"] = rounds
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
