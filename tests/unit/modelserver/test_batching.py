from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.errors import InvalidInput, ResourceExhausted
from serving.modelserver.batching import Batcher
from serving.modelserver.config import BatchingOptions
from serving.modelserver.metrics import Metrics


class SlowDouble:
    """A model that doubles its input and records the batch sizes it saw."""

    def __init__(self, delay: float = 0.05) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.release = threading.Event()

    def __call__(self, inputs):
        self.sizes.append(len(inputs["x"]))
        self.release.wait(self.delay)
        return {"y": inputs["x"] * 2}


def run(coroutine):
    return asyncio.run(coroutine)


def make(options: BatchingOptions, model: SlowDouble) -> tuple[Batcher, Metrics]:
    metrics = Metrics()
    return Batcher(model, options, ThreadPoolExecutor(4), metrics, "m"), metrics


def test_concurrent_requests_merge_and_each_gets_its_rows() -> None:
    model = SlowDouble()
    batcher, metrics = make(BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1), model)

    async def scenario():
        return await asyncio.gather(*(batcher.submit({"x": np.array([[float(i)]])}) for i in range(6)))

    results = run(scenario())
    assert [float(r["y"][0, 0]) for r in results] == [0, 2, 4, 6, 8, 10]
    assert model.sizes == [1, 5]  # the first runs alone; the rest queued while it ran
    assert metrics.processed_batch_size.count("m", "Predict") == 2


def test_padding_to_allowed_batch_sizes() -> None:
    model = SlowDouble(delay=0)
    options = BatchingOptions(max_batch_size=8, num_batch_threads=1, allowed_batch_sizes=(4, 8))
    batcher, metrics = make(options, model)
    result = run(batcher.submit({"x": np.ones((3, 2))}))
    assert result["y"].shape == (3, 2)
    assert model.sizes == [4]
    assert metrics.padding_size.count("m", "4") == 1


def test_timeout_waits_to_fill_a_batch() -> None:
    model = SlowDouble(delay=0)
    batcher, _ = make(BatchingOptions(max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1), model)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 1))}))
        await asyncio.sleep(0.02)
        rest = [batcher.submit({"x": np.zeros((1, 1))}) for _ in range(3)]
        await asyncio.gather(first, *rest)

    run(scenario())
    assert model.sizes == [4]  # full before the timeout: one batch


def test_full_queue_is_resource_exhausted() -> None:
    model = SlowDouble(delay=10)
    options = BatchingOptions(max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1)
    batcher, _ = make(options, model)

    async def scenario():
        tasks = [asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 1))})) for _ in range(3)]
        await asyncio.sleep(0.05)  # one running, two queued: the queue is full
        with pytest.raises(ResourceExhausted, match=r"batch scheduling queue .* is full"):
            await batcher.submit({"x": np.zeros((1, 1))})
        model.release.set()
        await asyncio.gather(*tasks)

    run(scenario())


def test_oversized_task_is_rejected_or_split() -> None:
    model = SlowDouble(delay=0)
    batcher, _ = make(BatchingOptions(max_batch_size=4, num_batch_threads=1), model)
    with pytest.raises(InvalidInput, match="Task size 5 is larger than maximum input batch size 4"):
        run(batcher.submit({"x": np.zeros((5, 1))}))
    splitting, _ = make(BatchingOptions(max_batch_size=4, enable_large_batch_splitting=True), model)
    result = run(splitting.submit({"x": np.arange(10.0).reshape(10, 1)}))
    np.testing.assert_array_equal(result["y"][:, 0], np.arange(10.0) * 2)


def test_different_row_shapes_do_not_merge() -> None:
    model = SlowDouble()
    batcher, _ = make(BatchingOptions(max_batch_size=8, num_batch_threads=1), model)

    async def scenario():
        return await asyncio.gather(
            batcher.submit({"x": np.zeros((1, 1))}),
            batcher.submit({"x": np.zeros((1, 2))}),
            batcher.submit({"x": np.zeros((1, 2))}),
        )

    results = run(scenario())
    assert [r["y"].shape for r in results] == [(1, 1), (1, 2), (1, 2)]
    assert sorted(model.sizes) == [1, 2]


def test_a_failing_batch_fails_its_callers_only() -> None:
    def broken(inputs):
        raise InvalidInput("model says no")

    batcher = Batcher(broken, BatchingOptions(max_batch_size=4), ThreadPoolExecutor(1), Metrics(), "m")
    with pytest.raises(InvalidInput, match="model says no"):
        run(batcher.submit({"x": np.zeros((1, 1))}))
