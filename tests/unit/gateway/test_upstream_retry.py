"""The upstream pool's retries against real gRPC servers on loopback: what moves a call to the next
target and what does not."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from serving import protos
from serving.errors import InvalidInput
from serving.gateway.config import load_settings
from serving.gateway.context import CallContext
from serving.gateway.metrics import Metrics
from serving.gateway.upstream import Upstream


class _Server:
    """A Predict that answers with ``code`` (or OK when None) after ``delay`` seconds, counting calls."""

    def __init__(self, code: grpc.StatusCode | None, delay: float = 0.0) -> None:
        self.code, self.delay, self.calls = code, delay, 0
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((protos.PREDICTION_SERVICE.handler({"Predict": self.predict}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")  # bound here: no pick-then-bind race

    async def predict(self, request: Any, context: Any) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.code is not None:
            await context.abort(self.code, f"answered {self.code.name}")
        response = protos.PredictResponse()
        response.model_spec.name = "answered"
        return response


@contextlib.asynccontextmanager
async def _pool(*servers: _Server) -> AsyncIterator[tuple[Upstream, Metrics]]:
    """The servers started, and an upstream over them in that order; all closed on the way out."""
    for server in servers:
        await server.server.start()
    targets = [f"127.0.0.1:{server.port}" for server in servers]
    settings = load_settings(None, upstreams={"default": {"targets": targets}})
    metrics = Metrics()
    upstream = Upstream("default", settings.upstreams["default"], settings, metrics)
    try:
        yield upstream, metrics
    finally:
        await upstream.close()
        for server in servers:
            await server.server.stop(0)


def _request() -> Any:
    request = protos.PredictRequest()
    request.model_spec.name = "cnn"
    return request


def _call(deadline_s: float = 5.0) -> CallContext:
    return CallContext("r1", time.monotonic() + deadline_s)


@pytest.mark.parametrize("code", [grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE])
def test_a_server_that_did_not_run_the_call_sends_it_to_the_next_target(code: grpc.StatusCode) -> None:
    # CANCELLED is what a gRPC server that is shutting down sends for calls no handler took yet
    # (grpc/grpc#41785): the scale-out drain saw one come back to its caller as 499 before this.
    async def scenario() -> None:
        refusing, answering = _Server(code), _Server(None)
        async with _pool(refusing, answering) as (upstream, metrics):
            response = await upstream.call("Predict", _request(), _call(), "cnn")
            assert response.model_spec.name == "answered"
            assert (refusing.calls, answering.calls) == (1, 1)
            retries = metrics.registry.get_sample_value(
                "tensorgate_gateway_upstream_retries_total", {"upstream": "default"}
            )
            assert retries == 1

    asyncio.run(scenario())


def test_an_answer_about_the_request_is_not_retried() -> None:
    async def scenario() -> None:
        refusing, answering = _Server(grpc.StatusCode.INVALID_ARGUMENT), _Server(None)
        async with _pool(refusing, answering) as (upstream, _):
            with pytest.raises(InvalidInput, match="answered INVALID_ARGUMENT"):
                await upstream.call("Predict", _request(), _call(), "cnn")
            assert (refusing.calls, answering.calls) == (1, 0)

    asyncio.run(scenario())


def test_a_caller_who_gives_up_is_not_retried_elsewhere() -> None:
    async def scenario() -> None:
        slow, answering = _Server(None, delay=5.0), _Server(None)
        async with _pool(slow, answering) as (upstream, _):
            call = asyncio.create_task(upstream.call("Predict", _request(), _call(10.0), "cnn"))
            while slow.calls == 0:
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.sleep(0.2)
            assert (slow.calls, answering.calls) == (1, 0)

    asyncio.run(scenario())
