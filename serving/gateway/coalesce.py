"""Opportunistic batching: concurrent Predicts for one servable share one upstream call.

While a call for a servable (same version, signature and input layout) is in flight, later requests
wait; when it returns, the waiting ones go up as one batch (their inputs concatenated on the first
dimension) and each gets its rows of the outputs back. A lone request is sent at once, so this adds
no latency at low load; under load it saves a gRPC call (and upstream per-call work) per merged row.
At most ``max_rows`` rows wait per key: a full batch leaves at once, alongside the one in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving import protos
from serving.errors import DeadlineExceeded, InvalidInput
from serving.gateway.context import CallContext
from serving.tensors import from_numpy, to_numpy

Send = Callable[[Any, CallContext], Awaitable[Any]]
Key = tuple[Any, ...]
_Item = tuple[Any, CallContext, "asyncio.Future[Any]"]


@dataclass
class _Waiting:
    rows: int = 0
    items: list[_Item] = field(default_factory=list)


def batch_key(servable: str, request: Any) -> tuple[Key, int] | None:
    """(key, rows) when the request can join others: every input batched on one first dimension."""
    spec = request.model_spec
    layout: list[Any] = [servable, spec.version.value, spec.version_label, spec.signature_name]
    rows = -1
    for name in sorted(request.inputs):
        tensor = request.inputs[name]
        dims = tuple(d.size for d in tensor.tensor_shape.dim)
        if not dims or (rows != -1 and dims[0] != rows) or not tensor.tensor_content:
            return None
        rows = dims[0]
        layout += [name, tensor.dtype, dims[1:]]
    if rows < 1 or request.output_filter:
        return None
    return tuple(layout), rows


class Coalescer:
    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._busy: set[Key] = set()
        self._waiting: dict[Key, _Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(self, servable: str, request: Any, call: CallContext, send: Send) -> Any:
        keyed = batch_key(servable, request) if self._max_rows > 1 else None
        if keyed is None:
            return await send(request, call)
        key, rows = keyed
        if key not in self._busy:
            self._busy.add(key)
            try:
                return await send(request, call)
            finally:
                self._next(key, send)
        waiting = self._waiting.setdefault(key, _Waiting())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a waiter that timed out leaves no "never retrieved" noise
        waiting.items.append((request, call, future))
        waiting.rows += rows
        if waiting.rows >= self._max_rows:
            self._launch(key, self._waiting.pop(key), send, chained=False)
        try:
            async with asyncio.timeout(max(call.remaining(), 0.0)):
                return await asyncio.shield(future)
        except TimeoutError:
            raise DeadlineExceeded("Deadline exceeded") from None

    def _next(self, key: Key, send: Send) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is None:
            self._busy.discard(key)
        else:
            self._launch(key, waiting, send, chained=True)

    def _launch(self, key: Key, waiting: _Waiting, send: Send, chained: bool) -> None:
        task = asyncio.create_task(self._send_batch(key, waiting, send, chained))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, key: Key, waiting: _Waiting, send: Send, chained: bool) -> None:
        try:
            items = [item for item in waiting.items if not item[2].done()]
            if len(items) == 1:
                await _answer(items[0], send)
            elif items:
                await self._merged(items, send)
        finally:
            if chained:
                self._next(key, send)

    async def _merged(self, items: list[_Item], send: Send) -> None:
        first_request, first_call, _ = items[0]
        merged = protos.PredictRequest()
        merged.model_spec.CopyFrom(first_request.model_spec)
        sizes = [request.inputs[next(iter(request.inputs))].tensor_shape.dim[0].size for request, _, _ in items]
        for name in first_request.inputs:
            from_numpy(np.concatenate([to_numpy(r.inputs[name]) for r, _, _ in items]), out=merged.inputs[name])
        ids = ",".join(call.request_id for _, call, _ in items)
        call = CallContext(ids[:1024], max(call.deadline for _, call, _ in items), first_call.request_key)
        try:
            response = await send(merged, call)
        except InvalidInput:
            # One bad request, or a batch over the upstream's own batch limit: each asks alone, so
            # each gets its own answer.
            await asyncio.gather(*(_answer(item, send) for item in items))
            return
        except Exception as error:  # anything else (unavailable, deadline, 429) is everyone's answer
            for _, _, future in items:
                if not future.done():
                    future.set_exception(error)
            return
        total = sum(sizes)
        outputs = {name: to_numpy(tensor) for name, tensor in response.outputs.items()}
        if any(array.ndim == 0 or array.shape[0] != total for array in outputs.values()):
            await asyncio.gather(*(_answer(item, send) for item in items))  # outputs not per row: one by one
            return
        start = 0
        for (_, _, future), size in zip(items, sizes, strict=True):
            part = protos.PredictResponse()
            part.model_spec.CopyFrom(response.model_spec)
            for name, array in outputs.items():
                from_numpy(array[start : start + size], out=part.outputs[name])
            start += size
            if not future.done():
                future.set_result(part)


async def _answer(item: _Item, send: Send) -> None:
    request, call, future = item
    try:
        result = await send(request, call)
    except Exception as error:
        if not future.done():
            future.set_exception(error)
    else:
        if not future.done():
            future.set_result(result)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
