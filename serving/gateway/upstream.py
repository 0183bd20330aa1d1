"""The one way the gateway reaches a model: TF Serving's gRPC API over a pool of long-lived channels.

Each upstream (TF Serving or the model server) has one or more targets: ``host:port`` (one channel),
or a ``dns:`` name that the gateway resolves every ``resolve_s`` into one target per address
(``discovery.py``); an address that leaves the answer takes no new calls and its channel closes once
its calls in flight have finished. Calls go round-robin over the targets that are not ejected, with
a deadline, the request id as metadata, and a retry with backoff on UNAVAILABLE or a CANCELLED sent by
the server (on the next target). A target that answers so ``consecutive_failures`` times in a row is
ejected; a prober calls it every ``probe_s`` and takes it back once it answers anything else.
Concurrency per upstream is bounded: past ``max_concurrency`` calls wait in a queue of ``max_queue``,
and past that the caller gets 429 instead of a pile-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import grpc

from serving import protos, tracing
from serving.errors import DeadlineExceeded, ResourceExhausted, ServingError, Unavailable, http_status_for
from serving.gateway import discovery
from serving.gateway.config import Settings, UpstreamConfig
from serving.gateway.context import CallContext
from serving.gateway.metrics import Metrics

log = logging.getLogger("tensorgate.gateway.upstream")

_PROBE_NAME = "__tensorgate_probe__"
_ALIVE_ERRORS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Answers that mean "this target did not run the call; another may": UNAVAILABLE, and CANCELLED, which
# a gRPC server that is shutting down gives to calls that reached it before a handler took them
# (grpc/grpc#41785). A caller who gives up cancels our task instead (asyncio.CancelledError), so a
# CANCELLED status here always comes from the other side. Every method called through here only reads.
_RETRY_ON = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    channel = settings.channel
    return [
        ("grpc.max_send_message_length", channel.max_message_bytes),
        ("grpc.max_receive_message_length", channel.max_message_bytes),
        ("grpc.keepalive_time_ms", int(channel.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(channel.keepalive_timeout_s * 1000)),
        # Pinging idle connections makes TF Serving answer GOAWAY(too_many_pings); ping only under load.
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", int(channel.max_reconnect_backoff_s * 1000)),
        ("grpc.enable_retries", 0),  # retries are ours: on another target, within the deadline
        # A name that resolves to several addresses (a Kubernetes headless Service) spreads over all.
        ("grpc.lb_policy_name", "round_robin"),
    ]


class Target:
    """One ``host:port`` (or one resolved address) with its channel and stubs."""

    def __init__(self, address: str, options: list[tuple[str, Any]]) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=options)
        channel: Any = self.channel  # Service.stub takes sync and aio channels alike
        prediction = protos.PREDICTION_SERVICE.stub(channel)
        model = protos.MODEL_SERVICE.stub(channel)
        self.methods: dict[str, Any] = {
            "Predict": prediction.Predict,
            "GetModelMetadata": prediction.GetModelMetadata,
            "GetModelStatus": model.GetModelStatus,
        }
        self.failures = 0
        self.ejected = False
        self.answered: dict[str, Any] = {}  # method -> its "OK" calls counter, looked up once


def upstream_error(error: grpc.aio.AioRpcError, servable: str) -> ServingError:
    """The caller's error for an upstream's answer: 4xx verbatim (they are about the request),
    5xx without details (they may name addresses or carry upstream internals)."""
    code = error.code()
    if http_status_for(code) < 500:
        return ServingError.from_code(code, error.details() or code.name)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded("Deadline exceeded")
    return ServingError.from_code(code, f"Upstream failed to serve {servable!r} ({code.name})")


class Upstream:
    def __init__(self, name: str, config: UpstreamConfig, settings: Settings, metrics: Metrics) -> None:
        self.name = name
        self._options = channel_options(settings)
        specs = [discovery.parse_target(target) for target in config.targets]
        self._names = [spec for spec in specs if spec.dns]
        self._static = [spec.text for spec in specs if not spec.dns]
        self._resolved: dict[str, list[str]] = {}  # dns target -> its addresses at the last answer
        self._resolve_s = config.resolve_s
        self._drain_s = settings.timeouts.request_s  # no call outlives its deadline
        self._draining: set[asyncio.Task[None]] = set()
        self._unresolved: dict[str, str] = {}  # dns target -> the last resolution error (logged once)
        self.targets = [Target(address, self._options) for address in self._static]
        self._retry = settings.retry
        self._eject_after = settings.ejection.consecutive_failures
        self._probe_s = settings.timeouts.probe_s
        self._max_queue = config.max_queue
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._waiting = 0
        self._next = 0
        self._metrics = metrics
        self._in_flight = metrics.upstream_in_flight.labels(name)
        self._rejected = metrics.upstream_rejected.labels(name)
        self._retries = metrics.retries.labels(name)
        for target in self.targets:
            metrics.target_healthy.labels(name, target.address).set(1)
            metrics.ejections.labels(name, target.address)  # exported at 0, so dashboards show "none yet"
        metrics.upstream_targets.labels(name).set(len(self.targets))

    def healthy_targets(self) -> list[Target]:
        return [target for target in self.targets if not target.ejected]

    def _pick(self) -> Target | None:
        count = len(self.targets)
        for offset in range(count):
            target = self.targets[(self._next + offset) % count]
            if not target.ejected:
                self._next = (self._next + offset + 1) % count
                return target
        return None

    async def call(self, method: str, request: Any, call: CallContext, servable: str, *, limit: bool = True) -> Any:
        """One RPC within ``call``'s deadline. ``limit=False`` skips the concurrency bound (control calls)."""
        if tracing.recording():  # a span over the wait for a slot and every attempt (an event each)
            attributes = {"tensorgate.upstream": self.name, "tensorgate.servable": servable}
            with tracing.span(f"upstream {method}", attributes):
                return await self._call(method, request, call, servable, limit)
        return await self._call(method, request, call, servable, limit)

    async def _call(self, method: str, request: Any, call: CallContext, servable: str, limit: bool) -> Any:
        if not limit:
            return await self._call_with_retry(method, request, call, servable)
        if self._slots.locked():
            if self._waiting >= self._max_queue:
                self._rejected.inc()
                raise ResourceExhausted(f"Upstream for {servable!r} is at capacity; retry later")
            self._waiting += 1
            try:
                async with asyncio.timeout(max(call.remaining(), 0.0)):
                    await self._slots.acquire()
            except TimeoutError:
                raise DeadlineExceeded("Deadline exceeded") from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self._in_flight.inc()
        try:
            return await self._call_with_retry(method, request, call, servable)
        finally:
            self._in_flight.dec()
            self._slots.release()

    async def _call_with_retry(self, method: str, request: Any, call: CallContext, servable: str) -> Any:
        metadata = (("x-request-id", call.request_id),)
        backoff = self._retry.backoff_initial_s
        for attempt in range(self._retry.attempts):
            target = self._pick()
            if target is None:
                raise Unavailable(f"No upstream is available for {servable!r}")
            remaining = call.remaining()
            if remaining <= 0:
                raise DeadlineExceeded("Deadline exceeded")
            try:
                rpc = target.methods[method]
                response = await rpc(request, timeout=remaining, metadata=tracing.outgoing(metadata))
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if tracing.recording():
                    tracing.event(
                        "attempt", {"attempt": attempt + 1, "server.address": target.address, "code": code.name}
                    )
                self._metrics.upstream_calls.labels(self.name, target.address, method, code.name).inc()
                if code not in _RETRY_ON:
                    target.failures = 0
                    raise upstream_error(error, servable) from None
                self._failed(target)
                log.warning(
                    "upstream %s target %s: %s (request %s)",
                    self.name,
                    target.address,
                    error.details(),
                    call.request_id,
                )
                last_try = attempt + 1 == self._retry.attempts
                if last_try or call.remaining() <= backoff:
                    raise upstream_error(error, servable) from None
                self._retries.inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._retry.backoff_max_s)
            else:
                target.failures = 0
                counter = target.answered.get(method)
                if counter is None:
                    counter = self._metrics.upstream_calls.labels(self.name, target.address, method, "OK")
                    target.answered[method] = counter
                counter.inc()
                if tracing.recording():
                    tracing.event("attempt", {"attempt": attempt + 1, "server.address": target.address, "code": "OK"})
                return response
        raise Unavailable(f"No upstream is available for {servable!r}")  # pragma: no cover

    def _failed(self, target: Target) -> None:
        target.failures += 1
        if target.failures >= self._eject_after and not target.ejected:
            target.ejected = True
            self._metrics.ejections.labels(self.name, target.address).inc()
            self._metrics.target_healthy.labels(self.name, target.address).set(0)
            log.warning("upstream %s: ejected target %s", self.name, target.address)

    async def probe_forever(self) -> None:
        request = protos.GetModelStatusRequest()
        request.model_spec.name = _PROBE_NAME
        while True:
            await asyncio.sleep(self._probe_s)
            for target in list(self.targets):
                if target.ejected:
                    await self._probe(target, request)

    async def resolve_forever(self) -> None:
        """Resolve the ``dns:`` targets now and every ``resolve_s``; nothing to do without one."""
        while self._names:
            await self.resolve()
            await asyncio.sleep(self._resolve_s)

    async def resolve(self) -> None:
        answers = await asyncio.gather(
            *(discovery.resolve(spec, timeout=min(self._resolve_s, 5.0)) for spec in self._names),
            return_exceptions=True,
        )
        for spec, answer in zip(self._names, answers, strict=True):
            if isinstance(answer, BaseException):
                # no answer: keep the addresses we had (grpc's resolver does the same)
                self._metrics.resolutions.labels(self.name, "error").inc()
                if self._unresolved.get(spec.text) != str(answer):
                    log.warning(
                        "upstream %s: cannot resolve %s (%s); keeping its addresses", self.name, spec.text, answer
                    )
                self._unresolved[spec.text] = str(answer)
                continue
            self._metrics.resolutions.labels(self.name, "ok").inc()
            if self._unresolved.pop(spec.text, None) is not None:
                log.info("upstream %s: %s resolves again: %s", self.name, spec.text, answer or "no address")
            self._resolved[spec.text] = answer
        self._set_addresses()

    def _set_addresses(self) -> None:
        wanted = list(
            dict.fromkeys([*self._static, *(a for spec in self._names for a in self._resolved.get(spec.text, []))])
        )
        current = {target.address: target for target in self.targets}
        if list(current) == wanted:
            return
        authority = {a: spec.authority for spec in self._names for a in self._resolved.get(spec.text, [])}
        targets = []
        for address in wanted:
            target = current.pop(address, None)
            if target is None:
                options = (
                    [*self._options, ("grpc.default_authority", authority[address])]
                    if address in authority
                    else self._options
                )
                target = Target(address, options)
                self._metrics.target_healthy.labels(self.name, address).set(1)
                self._metrics.ejections.labels(self.name, address)
                log.info("upstream %s: new target %s", self.name, address)
            targets.append(target)
        self.targets = targets
        self._metrics.upstream_targets.labels(self.name).set(len(targets))
        for target in current.values():  # gone from the answer: no new calls; those in flight finish
            log.info("upstream %s: target %s left; draining", self.name, target.address)
            self._metrics.target_healthy.remove(self.name, target.address)
            task = asyncio.create_task(target.channel.close(self._drain_s))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def _probe(self, target: Target, request: Any) -> None:
        try:
            await target.methods["GetModelStatus"](request, timeout=self._probe_s)
        except grpc.aio.AioRpcError as error:
            if error.code() in _ALIVE_ERRORS:
                return
        target.failures = 0
        target.ejected = False
        self._metrics.target_healthy.labels(self.name, target.address).set(1)
        log.info("upstream %s: target %s is back", self.name, target.address)

    async def close(self) -> None:
        for target in self.targets:
            await target.channel.close(None)
        for task in list(self._draining):
            with contextlib.suppress(Exception):
                await task


class UpstreamPool:
    """All upstreams of the gateway, by name, with their probers."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.upstreams = {
            name: Upstream(name, config, settings, metrics) for name, config in settings.upstreams.items()
        }
        self._tasks: list[asyncio.Task[None]] = []

    def __getitem__(self, name: str) -> Upstream:
        return self.upstreams[name]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(upstream.probe_forever()) for upstream in self.upstreams.values()]
        self._tasks += [asyncio.create_task(upstream.resolve_forever()) for upstream in self.upstreams.values()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for upstream in self.upstreams.values():
            await upstream.close()


def monotonic_deadline(seconds: float) -> float:
    return time.monotonic() + seconds
