"""The ceiling for batched requests: the model server's runtime called in-process at batch 64.

    python -m loadtest.ceiling --model models/cnn/1 --duration 10

Prints one JSON object (images/s). Runs in its own process so the runner never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from loadtest.bench_modelserver import in_process_images_per_s
from loadtest.payloads import test_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a SavedModel version directory")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    images, _ = test_images(max(256, args.batch))
    batch = images[: args.batch].reshape(args.batch, 28, 28, 1).astype(np.float32)
    rate = in_process_images_per_s(args.model, batch, args.duration)
    print(json.dumps({"images_per_s": rate, "batch": args.batch, "duration_s": args.duration, "runtime": "tensorflow"}))


if __name__ == "__main__":
    main()
