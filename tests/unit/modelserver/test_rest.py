from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import httpx

from serving.errors import ResourceExhausted
from serving.modelserver.metrics import Metrics
from serving.modelserver.rest import RestApp
from serving.modelserver.runtimes.base import PREDICT_METHOD, Signature, TensorSpec
from serving.predict import Predict, Prediction
from serving.tfserving.values import DT_FLOAT

SIGNATURE = Signature(
    "serving_default",
    PREDICT_METHOD,
    {"x": TensorSpec("x", DT_FLOAT, (-1,), "x:0")},
    {"y": TensorSpec("y", DT_FLOAT, (-1,), "y:0")},
)


class StubServer:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(2)
        entry = SimpleNamespace(runtime=SimpleNamespace(signatures={"serving_default": SIGNATURE}))

        @contextmanager
        def handle(name, version=None, label=None):
            yield entry

        self.manager = SimpleNamespace(handle=handle)

    async def predict_arrays(self, request: Predict) -> Prediction:
        if self.behaviour == "full":
            raise ResourceExhausted("The batch scheduling queue to which this task was submitted is full")
        if self.behaviour == "slow":
            await asyncio.sleep(5)
        return Prediction({"y": request.inputs["x"] * 2}, request.spec.name, 1, "serving_default")


def post(app: RestApp, path: str, body: bytes) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post(path, content=body)

    return asyncio.run(call())


def test_full_batching_queue_is_429_with_tf_serving_body() -> None:
    answer = post(RestApp(StubServer("full")), "/v1/models/m:predict", b'{"instances": [1.0]}')  # type: ignore[arg-type]
    assert answer.status_code == 429
    assert answer.content == b'{\n    "error": "The batch scheduling queue to which this task was submitted is full"\n}'


def test_rest_timeout_is_504() -> None:
    app = RestApp(StubServer("slow"), timeout_ms=100)  # type: ignore[arg-type]
    answer = post(app, "/v1/models/m:predict", b'{"instances": [1.0]}')
    assert answer.status_code == 504
    assert answer.json() == {"error": "Deadline Exceeded"}


def test_predict_and_request_metrics() -> None:
    server = StubServer("ok")
    app = RestApp(server, metrics_path="/monitoring/prometheus/metrics")  # type: ignore[arg-type]
    answer = post(app, "/V1/MODELS/m:PREDICT", b'{"instances": [1.0, 2.0]}')
    assert answer.content == b'{\n    "predictions": [2.0, 4.0\n    ]\n}'
    assert server.metrics.request_count.value("m", "OK") == 1
