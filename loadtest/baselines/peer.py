"""LitServe serving the same ONNX model with its request batching: the lightweight library a user might
pick instead of a serving stack.

    python -m loadtest.baselines.peer --onnx models/cnn_onnx/1/model.onnx --port 9002

One API server process and one inference worker (LitServe's layout: requests cross a queue between
them); ``--max-batch-size`` / ``--batch-timeout`` are LitServe's batching knobs. Requests carry one
image each (``instances`` of length 1), as in the benchmark's single-image steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np

from loadtest.baselines.handmade import output_order, session


class OnnxClassifier(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, onnx_path: Path, **options: Any) -> None:
        super().__init__(**options)
        self.onnx_path = onnx_path

    def setup(self, device: str) -> None:
        self.model = session(self.onnx_path)
        self.input_name = self.model.get_inputs()[0].name
        self.probabilities_name, _ = output_order(self.model)

    # unannotated on purpose: LitServe builds its route from this annotation (none: the parsed JSON body)
    def decode_request(self, request) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.asarray(request["instances"], np.float32).reshape(-1, 28, 28, 1)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(inputs)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.run([self.probabilities_name], {self.input_name: images})[0])

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return [row[None] for row in output]

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {"predictions": [{"class_id": int(row.argmax()), "probabilities": row.tolist()} for row in output]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--servable", default="cnn")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    args = parser.parse_args()
    api = OnnxClassifier(
        args.onnx,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path=f"/v1/models/{args.servable}:predict",
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, num_api_servers=1, log_level="warning")


if __name__ == "__main__":
    main()
