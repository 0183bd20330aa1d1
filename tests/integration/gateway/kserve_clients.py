"""Run by an interpreter that has the ``kserve`` package (``KSERVE_PYTHON``): kserve's v2 REST and gRPC
clients against a gateway. Imports nothing from this project, since that interpreter may not have it.

    KSERVE_PYTHON -m tests.integration.gateway.kserve_clients REST_URL GRPC_TARGET KEY NAME,NAME... < images.npy

Reads float32 images [n, 28, 28, 1] (``.npy``) on stdin; writes one JSON line: per client and name the
answers' class_id and probabilities, and the health and readiness answers.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from typing import Any

import numpy as np


async def main(rest_url: str, grpc_target: str, key: str, names: list[str], images: np.ndarray) -> dict[str, Any]:
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

    found: dict[str, Any] = {"rest": {}, "rest_json": {}, "grpc": {}}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    grpc_client = InferenceGRPCClient(grpc_target, timeout=30)
    headers = {"x-api-key": key}
    try:
        found["rest_live"] = await rest.is_server_live(rest_url, headers=dict(headers))
        found["rest_ready"] = await rest.is_server_ready(rest_url, headers=dict(headers))
        found["rest_model_ready"] = await rest.is_model_ready(rest_url, names[0], headers=dict(headers))
        found["grpc_live"] = await grpc_client.is_server_live(headers=tuple(headers.items()))
        found["grpc_model_ready"] = await grpc_client.is_model_ready(names[0], headers=tuple(headers.items()))
        for name in names:
            for key_name, binary in (("rest", True), ("rest_json", False)):
                tensor = InferInput("image", list(images.shape), "FP32")
                tensor.set_data_from_numpy(images, binary_data=binary)
                request = InferRequest(model_name=name, infer_inputs=[tensor], request_id="k-1")
                answer = await rest.infer(rest_url, request, model_name=name, headers=dict(headers))
                found[key_name][name] = _outputs(answer)
            tensor = InferInput("image", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images)
            answer = await grpc_client.infer(
                InferRequest(model_name=name, infer_inputs=[tensor], request_id="k-2"), headers=tuple(headers.items())
            )
            found["grpc"][name] = _outputs(answer)
    finally:
        await rest.close()
        await grpc_client.close()
    return found


def _outputs(answer: Any) -> dict[str, Any]:
    return {output.name: output.as_numpy().tolist() for output in answer.outputs}


if __name__ == "__main__":
    rest_url, grpc_target, key, names = sys.argv[1:5]
    images = np.load(io.BytesIO(sys.stdin.buffer.read()))
    print(json.dumps(asyncio.run(main(rest_url, grpc_target, key, names.split(","), images))))
