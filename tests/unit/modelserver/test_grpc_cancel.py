"""A gRPC client that goes away mid-call: TF Serving does not notice (its PredictionServiceImpl never
looks at the ServerContext's cancellation, ``model_servers/prediction_service_impl.cc``); the request
runs to its end and ``RecordModelRequestCount`` records its own outcome. grpc.aio cancels the handler
when the client leaves; the model server lets the call finish and counts what it came to."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from serving import protos
from serving.errors import InvalidInput
from serving.modelserver.grpc_server import _Handlers
from serving.modelserver.metrics import Metrics


@pytest.mark.parametrize(("outcome", "counted"), [(None, "OK"), (InvalidInput("bad"), "INVALID_ARGUMENT")])
def test_a_cancelled_call_runs_to_its_end_and_counts_its_outcome(outcome: Exception | None, counted: str) -> None:
    metrics = Metrics()
    finished: list[bool] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def call(request: object) -> str:
            await release.wait()
            finished.append(True)
            if outcome is not None:
                raise outcome
            return "answer"

        handler = _Handlers(SimpleNamespace(metrics=metrics)).wrap("predict", call)  # type: ignore[arg-type]
        request = protos.PredictRequest()
        request.model_spec.name = "m"
        task = asyncio.ensure_future(handler(request, None))
        await asyncio.sleep(0.01)
        task.cancel()  # what grpc.aio does when the client cancels or disconnects
        await asyncio.sleep(0.01)
        assert metrics.request_count.value("m", counted) == 0  # not counted before it ends
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert finished == [True]
    assert metrics.request_count.value("m", counted) == 1
    assert metrics.request_count.value("m", "CANCELLED") == 0
