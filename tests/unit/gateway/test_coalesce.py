from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from serving.errors import DeadlineExceeded, InvalidInput, Unavailable
from serving.gateway.coalesce import Coalescer, batch_key
from serving.gateway.context import CallContext
from serving.predict import ModelSpec, Predict, Prediction


def _request(value: float, rows: int = 1, name: str = "cnn") -> Predict:
    return Predict(ModelSpec(name), {"x": np.full((rows, 2), value, np.float32)})


def _call(request_id: str, seconds: float = 5.0) -> CallContext:
    return CallContext(request_id, time.monotonic() + seconds)


class Upstream:
    """Answers y = 2x after a delay; records the rows and request ids of every call."""

    def __init__(self, delay: float = 0.3, fail: Exception | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: list[tuple[int, str]] = []

    async def send(self, request: Predict, call: CallContext) -> Prediction:
        x = request.inputs["x"]
        self.calls.append((x.shape[0], call.request_id))
        await asyncio.sleep(self.delay)
        if self.fail is not None and (x.shape[0] > 1 or isinstance(self.fail, Unavailable)):
            raise self.fail
        return Prediction({"y": x * 2}, request.spec.name, 1)


async def _burst(coalescer: Coalescer, upstream: Upstream, values: list[float]) -> list[Any]:
    leader = asyncio.ensure_future(coalescer.predict("cnn", _request(values[0]), _call("r0"), upstream.send))
    await asyncio.sleep(0.05)  # the leader is in flight (for 0.3 s)
    followers = [
        coalescer.predict("cnn", _request(value, rows=2), _call(f"r{i}"), upstream.send)
        for i, value in enumerate(values[1:], start=1)
    ]
    return await asyncio.gather(leader, *followers, return_exceptions=True)


def test_followers_share_one_call_and_get_their_own_rows() -> None:
    upstream = Upstream()
    answers = asyncio.run(_burst(Coalescer(32), upstream, [1.0, 2.0, 3.0, 4.0]))
    assert [a.outputs["y"][:, 0].tolist() for a in answers] == [[2.0], [4.0, 4.0], [6.0, 6.0], [8.0, 8.0]]
    assert upstream.calls == [(1, "r0"), (6, "r1,r2,r3")]


def test_a_full_batch_leaves_without_waiting() -> None:
    upstream = Upstream()
    asyncio.run(_burst(Coalescer(4), upstream, [1.0, 2.0, 3.0, 4.0, 5.0]))
    assert [rows for rows, _ in upstream.calls] == [1, 4, 4]


def test_refused_batch_is_asked_again_one_by_one_and_other_errors_are_shared() -> None:
    refusing = Upstream(fail=InvalidInput("Task size 6 is larger than maximum input batch size 1"))
    answers = asyncio.run(_burst(Coalescer(32), refusing, [1.0, 2.0, 3.0]))
    assert all(isinstance(answer, InvalidInput) for answer in answers[1:])  # 2 rows each: still refused alone
    assert [rows for rows, _ in refusing.calls] == [1, 4, 2, 2]
    down = Upstream(fail=Unavailable("down"))
    answers = asyncio.run(_burst(Coalescer(32), down, [1.0, 2.0, 3.0]))
    assert all(isinstance(answer, Unavailable) for answer in answers)
    assert [rows for rows, _ in down.calls] == [1, 4]


def test_a_waiter_keeps_its_own_deadline() -> None:
    async def scenario() -> None:
        upstream = Upstream(delay=0.5)
        coalescer = Coalescer(32)
        leader = asyncio.ensure_future(coalescer.predict("cnn", _request(1.0), _call("r0"), upstream.send))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await coalescer.predict("cnn", _request(2.0), _call("r1", seconds=0.1), upstream.send)
        await leader

    asyncio.run(scenario())


def test_a_waiter_that_gave_up_is_not_sent_upstream() -> None:
    async def scenario() -> list[tuple[int, str]]:
        upstream = Upstream(delay=0.5)
        coalescer = Coalescer(32)
        leader = asyncio.ensure_future(coalescer.predict("cnn", _request(1.0), _call("r0"), upstream.send))
        await asyncio.sleep(0.05)
        expired = asyncio.ensure_future(
            coalescer.predict("cnn", _request(2.0), _call("r1", seconds=0.1), upstream.send)
        )
        gone = asyncio.ensure_future(coalescer.predict("cnn", _request(3.0), _call("r2"), upstream.send))
        kept = asyncio.ensure_future(coalescer.predict("cnn", _request(4.0, rows=2), _call("r3"), upstream.send))
        await asyncio.sleep(0.05)
        gone.cancel()  # e.g. its client disconnected
        with pytest.raises(DeadlineExceeded):
            await expired
        with pytest.raises(asyncio.CancelledError):
            await gone
        await leader
        assert (await kept).outputs["y"][:, 0].tolist() == [8.0, 8.0]
        return upstream.calls

    assert asyncio.run(scenario()) == [(1, "r0"), (2, "r3")]


def test_only_uniform_dense_requests_can_join() -> None:
    assert batch_key("cnn", _request(1.0, rows=3)) is not None
    mixed = _request(1.0, rows=3)
    mixed.inputs["z"] = np.zeros((2, 2), np.float32)
    assert batch_key("cnn", mixed) is None
    filtered = Predict(ModelSpec("cnn"), _request(1.0).inputs, output_filter=("y",))
    assert batch_key("cnn", filtered) is None
    strings = Predict(ModelSpec("cnn"), {"x": np.array([b"a"], object)})
    assert batch_key("cnn", strings) is None
    assert batch_key("cnn", _request(1.0)) != batch_key("lstm", _request(1.0))


def test_the_histogram_counts_requests_per_upstream_call() -> None:
    from serving.gateway.metrics import Metrics

    metrics = Metrics()
    upstream = Upstream()
    asyncio.run(_burst(Coalescer(32, metrics.coalesced), upstream, [1.0, 2.0, 3.0, 4.0]))
    assert [rows for rows, _ in upstream.calls] == [1, 6]  # the leader alone, then three merged
    registry = metrics.registry
    assert registry.get_sample_value("tensorgate_gateway_coalesced_requests_count", {"servable": "cnn"}) == 2
    assert registry.get_sample_value("tensorgate_gateway_coalesced_requests_sum", {"servable": "cnn"}) == 4
