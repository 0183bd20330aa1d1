"""What a careful engineer writes by hand in one process: FastAPI + orjson + onnxruntime, no hop.

    python -m loadtest.baselines.handmade --onnx models/cnn_onnx/1/model.onnx --port 9001

The body is read as bytes and parsed with orjson, the session is called directly on the event loop (the
model takes well under a millisecond, less than a thread hand-off), one intra-op thread (two cores are
shared with the load generator), the answer is serialised with orjson. No validation beyond what numpy
and onnxruntime do, no metrics, no logs: the floor a feature-complete gateway is measured against.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def output_order(model: ort.InferenceSession) -> tuple[str, str]:
    names = [output.name for output in model.get_outputs()]
    if "probabilities" not in names:
        raise ValueError(f"the ONNX model has no 'probabilities' output (outputs: {names})")
    return "probabilities", "class_id" if "class_id" in names else ""


def build_app(onnx_path: Path, servable: str) -> FastAPI:
    model = session(onnx_path)
    input_name = model.get_inputs()[0].name
    probabilities_name, class_name = output_order(model)
    fetch = [probabilities_name] + ([class_name] if class_name else [])
    app = FastAPI(openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post(f"/v1/models/{servable}:predict")
    async def predict(request: Request) -> Response:
        try:
            images = np.asarray(orjson.loads(await request.body())["instances"], np.float32).reshape(-1, 28, 28, 1)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            return Response(orjson.dumps({"error": str(error)}), status_code=400, media_type="application/json")
        outputs = model.run(fetch, {input_name: images})
        probabilities = outputs[0]
        classes = outputs[1] if class_name else probabilities.argmax(axis=1)
        rows = [
            {"class_id": int(k), "probabilities": p}
            for k, p in zip(classes.tolist(), probabilities.tolist(), strict=True)
        ]
        return Response(orjson.dumps({"predictions": rows}), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--servable", default="cnn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.onnx, args.servable), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
