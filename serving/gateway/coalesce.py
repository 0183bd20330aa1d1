"""Opportunistic batching: concurrent Predicts for one servable share one upstream call.

While a call for a servable (same version, signature and input layout) is in flight, later requests
wait; when it returns, the waiting ones go up as one batch (their inputs concatenated on the first
dimension) and each gets its rows of the outputs back. A lone request is sent at once, so this adds
no latency at low load; under load it saves a gRPC call (and upstream per-call work) per merged row.
At most ``max_rows`` rows wait per key: a full batch leaves at once, alongside the one in flight.
Requests and answers are arrays (``serving.predict``): a merged call concatenates its callers' inputs
once, the sender encodes one PredictRequest for it, and each caller gets views of its rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving import tracing
from serving.errors import DeadlineExceeded, InvalidInput
from serving.gateway.context import CallContext
from serving.predict import Predict, Prediction

Send = Callable[[Predict, CallContext], Awaitable[Prediction]]
Key = tuple[Any, ...]
_Item = tuple[Predict, CallContext, "asyncio.Future[Prediction]"]


@dataclass
class _Waiting:
    rows: int = 0
    items: list[_Item] = field(default_factory=list)
    traces: list[Any] = field(default_factory=list)  # each item's trace context, when tracing is on


def batch_key(servable: str, request: Predict) -> tuple[Key, int] | None:
    """(key, rows) when the request can join others: every input batched on one first dimension."""
    rows = request.rows()
    if not rows or request.output_filter:
        return None
    spec = request.spec
    layout: list[Any] = [servable, spec.version, spec.label, spec.signature]
    for name in sorted(request.inputs):
        array = request.inputs[name]
        if array.dtype.kind not in "biuf":
            return None
        layout += [name, array.dtype.str, array.shape[1:]]
    return tuple(layout), rows


class Coalescer:
    def __init__(self, max_rows: int, sizes: Any = None) -> None:
        """``sizes``: a histogram labelled by servable, observing the requests each upstream call answers."""
        self._max_rows = max_rows
        self._sizes = sizes
        self._size_of: dict[str, Any] = {}  # servable -> its histogram child (labels() costs a lookup per call)
        self._busy: set[Key] = set()
        self._waiting: dict[Key, _Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(self, servable: str, request: Predict, call: CallContext, send: Send) -> Prediction:
        keyed = batch_key(servable, request) if self._max_rows > 1 else None
        if keyed is None:
            self._observe(servable, 1)
            return await send(request, call)
        key, rows = keyed
        if key not in self._busy:
            self._busy.add(key)
            self._observe(servable, 1)
            try:
                return await send(request, call)
            finally:
                self._next(key, send)
        waiting = self._waiting.setdefault(key, _Waiting())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        future.add_done_callback(_retrieved)  # an answer nobody waits for any more leaves no noise
        # The deadline fails the future itself (no asyncio.timeout + shield around it), so a batch that
        # has not left yet drops the rows of a caller who gave up, as it does those of a caller
        # cancelled while waiting (a client gone).
        expiry = loop.call_later(max(call.remaining(), 0.0), _expire, future)
        with tracing.span("coalesce wait", {"tensorgate.servable": servable}):
            if tracing.enabled():
                waiting.traces.append(tracing.capture())  # the batch's span links to this one
            waiting.items.append((request, call, future))
            waiting.rows += rows
            if waiting.rows >= self._max_rows:
                self._launch(key, self._waiting.pop(key), send, chained=False)
            try:
                return await future
            finally:
                expiry.cancel()

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
            if items:
                self._observe(key[0], len(items))
            # the batch's upstream call belongs to the first waiter's trace, linked to the others'
            traces = [trace for item, trace in zip(waiting.items, waiting.traces, strict=False) if not item[2].done()]
            with tracing.span_from("coalesced batch", traces, {"tensorgate.requests": len(items)}):
                if len(items) == 1:
                    await _answer(items[0], send)
                elif items:
                    await self._merged(items, send)
        finally:
            if chained:
                self._next(key, send)

    def _observe(self, servable: str, requests: int) -> None:
        if self._sizes is None:
            return
        child = self._size_of.get(servable)
        if child is None:
            child = self._size_of[servable] = self._sizes.labels(servable)
        child.observe(requests)

    async def _merged(self, items: list[_Item], send: Send) -> None:
        first, first_call, _ = items[0]
        sizes = [request.rows() or 0 for request, _, _ in items]
        inputs = {name: np.concatenate([r.inputs[name] for r, _, _ in items]) for name in first.inputs}
        merged = Predict(first.spec, inputs)
        ids = ",".join(call.request_id for _, call, _ in items)
        call = CallContext(ids[:1024], max(call.deadline for _, call, _ in items), first_call.request_key)
        try:
            answer = await send(merged, call)
        except InvalidInput:
            # One bad request, or a batch over the upstream's own batch limit: each asks alone, so
            # each gets its own answer.
            await _one_by_one(items, send)
            return
        except Exception as error:  # anything else (unavailable, deadline, 429) is everyone's answer
            for _, _, future in items:
                if not future.done():
                    future.set_exception(error)
            return
        total = sum(sizes)
        if any(array.ndim == 0 or array.shape[0] != total for array in answer.outputs.values()):
            await _one_by_one(items, send)  # outputs not per row
            return
        start = 0
        for (_, _, future), size in zip(items, sizes, strict=True):
            if not future.done():
                future.set_result(answer.rows(start, start + size))
            start += size


async def _one_by_one(items: list[_Item], send: Send) -> None:
    """Each item still waited for, sent alone."""
    await asyncio.gather(*(_answer(item, send) for item in items if not item[2].done()))


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


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded("Deadline exceeded"))


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
