"""Request batching under TF Serving's knobs (BatchingParameters).

One ``Batcher`` per servable version and signature. Requests wait in a queue; a batch starts when a
batch thread is free and either ``batch_timeout_micros`` has passed since its oldest request or it is
full (``max_batch_size`` rows). With a timeout of 0, as in TF Serving, whatever queued up while the
batch threads were busy goes out together. Batches are padded up to the next ``allowed_batch_sizes``
entry by repeating the first row, run in a worker thread, and split back per request. A full queue
(``max_enqueued_batches`` batches waiting) answers RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving import tracing
from serving.errors import Internal, InvalidInput, ResourceExhausted
from serving.modelserver.config import BatchingOptions
from serving.modelserver.metrics import Metrics

RunBatch = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    rows: int
    key: tuple[object, ...]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)
    queued: tracing.Interval | None = None  # the "batch queue" span, ended when the batch starts
    trace: Any = None  # the request's trace context: the batch's span links to it


def batch_key(inputs: Mapping[str, np.ndarray]) -> tuple[object, ...] | None:
    """Requests merge only when every input has the same per-row shape and dtype; None if unbatchable."""
    rows = None
    key: list[object] = []
    for alias in sorted(inputs):
        array = inputs[alias]
        if array.ndim == 0 or (rows is not None and array.shape[0] != rows):
            return None
        rows = array.shape[0]
        key.append((alias, array.shape[1:], array.dtype.str))
    return tuple(key) if rows else None


class Batcher:
    def __init__(
        self,
        run: RunBatch,
        options: BatchingOptions,
        executor: Executor,
        metrics: Metrics,
        model_name: str,
    ) -> None:
        self._run = run
        self._options = options
        self._executor = executor
        self._metrics = metrics
        self._model_name = model_name
        self._queue: deque[_Task] = deque()
        self._queued_rows = 0
        self._free_threads = options.num_batch_threads
        self._timer: asyncio.TimerHandle | None = None

    @property
    def max_batch_size(self) -> int:
        return self._options.max_execution_batch_size or self._options.max_batch_size

    async def submit(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = batch_key(inputs)
        if key is None:
            raise InvalidInput("Batching session Run() input tensors must have equal 0th-dimension size")
        rows = next(iter(inputs.values())).shape[0]
        limit = self._options.max_batch_size
        if rows > limit:
            if not self._options.enable_large_batch_splitting:
                raise InvalidInput(f"Task size {rows} is larger than maximum input batch size {limit}")
            return await self._submit_split(inputs, rows)
        batches_after = -(-(self._queued_rows + rows) // limit)
        if batches_after > self._options.max_enqueued_batches:
            raise ResourceExhausted("The batch scheduling queue to which this task was submitted is full")
        loop = asyncio.get_running_loop()
        task = _Task(inputs, rows, key, loop.create_future())
        if tracing.enabled():
            task.trace = tracing.capture()
            task.queued = tracing.Interval("batch queue", {"tensorgate.rows": rows})
        self._queue.append(task)
        self._queued_rows += rows
        self._metrics.input_batch_size.observe(rows, self._model_name, "Predict")
        self._kick()
        return await task.future

    async def _submit_split(self, inputs: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        step = self._options.max_batch_size
        parts = await asyncio.gather(
            *(self.submit({a: v[i : i + step] for a, v in inputs.items()}) for i in range(0, rows, step))
        )
        return {alias: np.concatenate([p[alias] for p in parts]) for alias in parts[0]}

    def _kick(self) -> None:
        while self._free_threads > 0 and self._queue:
            timeout = self._options.batch_timeout_micros / 1e6
            oldest = self._queue[0]
            waited = time.perf_counter() - oldest.enqueued
            if timeout > 0 and waited < timeout and self._rows_for(oldest.key) < self.max_batch_size:
                if self._timer is None:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(timeout - waited, self._on_timer)
                return
            self._start_batch()

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _rows_for(self, key: tuple[object, ...]) -> int:
        return sum(task.rows for task in self._queue if task.key == key)

    def _start_batch(self) -> None:
        head = self._queue[0]
        batch: list[_Task] = []
        rows = 0
        kept: deque[_Task] = deque()
        while self._queue:
            task = self._queue.popleft()
            if task.key == head.key and rows + task.rows <= self.max_batch_size:
                batch.append(task)
                rows += task.rows
            else:
                kept.append(task)
        self._queue = kept
        self._queued_rows -= rows
        self._free_threads -= 1
        now = time.perf_counter()
        for task in batch:
            self._metrics.batch_delay.observe((now - task.enqueued) * 1e6, self._model_name, "Predict")
            if task.queued is not None:
                task.queued.end()
        asyncio.get_running_loop().create_task(self._execute(batch, rows))

    def _padded_size(self, rows: int) -> int:
        sizes = self._options.allowed_batch_sizes
        if not sizes:
            return rows
        index = bisect.bisect_left(sizes, rows)
        return sizes[index] if index < len(sizes) else rows

    async def _execute(self, batch: list[_Task], rows: int) -> None:
        target = self._padded_size(rows)
        try:
            merged = {
                alias: np.concatenate([task.inputs[alias] for task in batch])
                if len(batch) > 1
                else batch[0].inputs[alias]
                for alias in batch[0].inputs
            }
            if target > rows:
                merged = {a: np.concatenate([v, np.repeat(v[:1], target - rows, axis=0)]) for a, v in merged.items()}
                self._metrics.padding_size.observe(target - rows, self._model_name, str(target))
            self._metrics.processed_batch_size.observe(target, self._model_name, "Predict")
            loop = asyncio.get_running_loop()
            attributes = {"tensorgate.requests": len(batch), "tensorgate.rows": rows, "tensorgate.padded_rows": target}
            with tracing.span_from("batch", [task.trace for task in batch], attributes), tracing.span("runtime"):
                outputs = await loop.run_in_executor(self._executor, self._run, merged)
            for output in outputs.values():
                if output.ndim == 0 or output.shape[0] != target:
                    raise Internal(
                        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                        "sizes of the input tensors"
                    )
            offset = 0
            for task in batch:
                if not task.future.done():
                    task.future.set_result({a: v[offset : offset + task.rows] for a, v in outputs.items()})
                offset += task.rows
        except Exception as error:  # every caller of the failed batch gets the error
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(error)
        finally:
            self._free_threads += 1
            self._kick()
