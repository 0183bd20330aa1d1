"""The hostile check's input matrix over every servable and runtime: wrong ranks, wrong dimensions, wrong
dtypes and empty batches, to the gateway and to the model server, over REST and gRPC. Each must be
refused (400 / INVALID_ARGUMENT) before a runtime sees it; after each servable's cases, both servers
still answer that servable as before. (A wrong rank once aborted the model server on Intel CPUs, where
TensorFlow's oneDNN kernels are on; an empty batch broke a TFLite interpreter.)"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import numpy as np
import orjson

from loadtest.reliability import rawhttp
from loadtest.reliability.common import API_KEY
from serving import protos
from serving.tensors import DT, from_numpy, to_numpy

if TYPE_CHECKING:
    from loadtest.reliability.hostile import Checker

KEY = (("x-api-key", API_KEY),)
JSON_HEADERS = {"x-api-key": API_KEY, "Content-Type": "application/json"}

GRPC_ARRAYS: dict[str, np.ndarray] = {
    "rank 2 [1,2]": np.array([[1.0, 2.0]], np.float32),
    "rank 3 [1,28,28]": np.zeros((1, 28, 28), np.float32),
    "rank 3 [28,28,1]": np.zeros((28, 28, 1), np.float32),
    "rank 5": np.zeros((1, 1, 28, 28, 1), np.float32),
    "rank 1 (784 pixels)": np.zeros(784, np.float32),
    "27 rows": np.zeros((1, 27, 28, 1), np.float32),
    "3 channels": np.zeros((1, 28, 28, 3), np.float32),
    "a zero-size dimension": np.zeros((1, 28, 0, 1), np.float32),
    "empty batch": np.zeros((0, 28, 28, 1), np.float32),
    "int32": np.zeros((1, 28, 28, 1), np.int32),
    "double": np.zeros((1, 28, 28, 1), np.float64),
    "bool": np.zeros((1, 28, 28, 1), np.bool_),
}
REST_BODIES: dict[str, dict[str, Any]] = {
    "rank 2 [[1.0, 2.0]]": {"instances": [[1.0, 2.0]]},
    "rank 3 instances": {"instances": np.zeros((1, 28, 28)).tolist()},
    "rank 2 columnar": {"inputs": np.zeros((28, 28)).tolist()},
    "27 rows": {"instances": np.zeros((1, 27, 28, 1)).tolist()},
    "flat pixels": {"instances": [0.0] * 784},
    "strings": {"instances": [[[["x"]] * 28] * 28]},
    "empty columnar": {"inputs": []},
}


def image(rows: int = 2) -> np.ndarray:
    return (np.arange(rows * 784, dtype=np.float32) * 7 % 256).reshape(rows, 28, 28, 1)


def string_tensor() -> Any:
    tensor = protos.TensorProto(dtype=DT["DT_STRING"].number)
    for size in (1, 28, 28, 1):
        tensor.tensor_shape.dim.add().size = size
    tensor.string_val.append(b"x")
    return tensor


def predict(target: str, servable: str, array: np.ndarray | None, tensor: Any, key: tuple[tuple[str, str], ...]) -> Any:
    request = protos.PredictRequest()
    request.model_spec.name = servable
    if tensor is not None:
        request.inputs["image"].CopyFrom(tensor)
    else:
        from_numpy(array, out=request.inputs["image"])
    with grpc.insecure_channel(target) as channel:
        return protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30, metadata=key)


def classes(target: str, servable: str, key: tuple[tuple[str, str], ...]) -> list[int]:
    response = predict(target, servable, image(), None, key)
    return [int(v) for v in to_numpy(response.outputs["class_id"])]


def run_matrix(c: Checker, servables: dict[str, str]) -> None:
    """Every case for every servable, then that servable's good requests."""
    reference = {name: classes(c.modelserver.grpc, name, ()) for name in servables}
    for servable, platform in servables.items():
        group = f"shapes: {servable} ({platform})"
        path = f"/v1/models/{servable}:predict"
        for name, body in REST_BODIES.items():
            data = orjson.dumps(body)
            request = functools.partial(rawhttp.request, method="POST", path=path, body=data, headers=JSON_HEADERS)
            c.rest(group, name, "400", request, why="does not fit the signature")
        cases: dict[str, tuple[np.ndarray | None, Any]] = {n: (a, None) for n, a in GRPC_ARRAYS.items()}
        cases["strings"] = (None, string_tensor())
        for name, (array, tensor) in cases.items():
            for where, target, metadata in (("gateway", c.gateway.grpc, KEY), ("modelserver", c.modelserver.grpc, ())):
                call = functools.partial(predict, target, servable, array, tensor, metadata)
                c.grpc_case(group, name, "INVALID_ARGUMENT", call, why="does not fit the signature", target=where)
        healthy_servable(c, servable, reference[servable], group)


def healthy_servable(c: Checker, servable: str, expected: list[int], group: str) -> None:
    where = f"{servable} after {group}"
    for server in (c.gateway, c.modelserver):
        if not c.result.expect(server.managed.alive(), f"{server.managed.name} died: {where}"):
            return
    try:
        for target, key in ((c.gateway.grpc, KEY), (c.modelserver.grpc, ())):
            c.result.expect(classes(target, servable, key) == expected, f"gRPC {target}: wrong classes {where}")
        body = orjson.dumps({"instances": image().tolist()})
        for base in (c.gateway.rest, c.modelserver.rest):
            answer = httpx.post(f"{base}/v1/models/{servable}:predict", content=body, headers=JSON_HEADERS, timeout=30)
            got = [p["class_id"] for p in answer.json()["predictions"]] if answer.status_code == 200 else answer.text
            c.result.expect(got == expected, f"REST {base}: {got!r} {where}")
    except (grpc.RpcError, OSError, ValueError, KeyError) as error:
        c.result.fail(f"a normal request failed: {where}: {error!r}")
    c.health_checks += 1
