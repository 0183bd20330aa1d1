"""The gateway's core, shared by the REST and gRPC fronts: resolve a name, call upstream, vote, mirror.

A name is an ensemble, a route, or a servable (anything else passes through to the default upstream,
which answers TF Serving's own NOT_FOUND). Every front decodes its request once into a
``serving.predict.Predict`` (named arrays plus the model spec) and gets a ``Prediction`` back from
``predict``; protos are made only for the upstream call (one per coalesced batch). Metadata and status
stay TF Serving's protos.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from serving import protos, tracing
from serving.errors import InvalidInput, NotFound, ServingError, Unimplemented
from serving.gateway.accesslog import AccessLog
from serving.gateway.catalog import AVAILABLE, Catalog
from serving.gateway.coalesce import Coalescer, Send
from serving.gateway.config import Settings
from serving.gateway.context import CallContext
from serving.gateway.ensembles import Ensemble, MemberAnswer
from serving.gateway.metrics import Metrics
from serving.gateway.routing import Route, top_classes
from serving.gateway.upstream import UpstreamPool
from serving.predict import ModelSpec, Predict, Prediction

log = logging.getLogger("tensorgate.gateway")

_SHADOW_IN_FLIGHT = 64  # mirrored calls beyond this are dropped (and counted), never queued
# No servable has a longer name; the upstream would echo a longer one in its NOT_FOUND message, and a
# gRPC status message over 8 KiB breaks the channel's metadata limit (RESOURCE_EXHAUSTED, not 404).
MAX_NAME_CHARS = 1024


def check_name(name: str) -> None:
    if len(name) > MAX_NAME_CHARS:
        raise NotFound(f"Servable not found: a name of {len(name)} characters (the limit is {MAX_NAME_CHARS})")


def check_spec(spec: Any) -> None:
    """A model spec's name and version label (a ``serving.predict.ModelSpec`` or TF Serving's proto)
    within MAX_NAME_CHARS: TF Serving echoes an unknown label in its 400 ("Unrecognized servable
    version label: ..."), so an over-long one has the same problem as an over-long name."""
    check_name(spec.name)
    label = (spec.label if isinstance(spec, ModelSpec) else spec.version_label) or ""
    if len(label) > MAX_NAME_CHARS:
        raise InvalidInput(
            f"Unrecognized servable version label: a label of {len(label)} characters (the limit is {MAX_NAME_CHARS})"
        )


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.access = AccessLog(self.metrics, enabled=settings.log_level in ("debug", "info"))
        self.catalog = Catalog(settings, self.metrics)  # validates the config's references
        self._pool: UpstreamPool | None = None
        self.routes = {name: Route(name, config) for name, config in settings.routes.items()}
        self.ensembles = {
            name: Ensemble(name, config, self.metrics, self.catalog.repo) for name, config in settings.ensembles.items()
        }
        self._max_batch = settings.limits.max_batch_size
        self._metadata: dict[tuple[str, int | None, str | None], tuple[float, dict[str, dict[str, int]]]] = {}
        self._shadows: set[asyncio.Task[None]] = set()
        self._coalescer = Coalescer(settings.batching.max_rows, self.metrics.coalesced)
        self._senders: dict[str, Send] = {}

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise RuntimeError("the gateway has not started")
        return self._pool

    async def start(self) -> None:
        """Open channels and start polling; runs in the serving event loop (grpc.aio binds to it)."""
        self._pool = UpstreamPool(self.settings, self.metrics)
        self._pool.start()
        self.catalog.start(self._pool)

    async def close(self) -> None:
        await self.catalog.close()
        for task in list(self._shadows):
            task.cancel()
        if self._pool is not None:
            await self._pool.close()

    # Predict ------------------------------------------------------------------------------------

    async def predict(self, request: Predict, call: CallContext) -> Prediction:
        """The one prediction path of every front; ``call`` records the servable and version that answered."""
        prediction, _ = await self.predict_with_votes(request, call)
        return prediction

    async def predict_with_votes(
        self, request: Predict, call: CallContext
    ) -> tuple[Prediction, list[MemberAnswer] | None]:
        """``predict``, plus each member's answer when the name is an ensemble (the friendly API shows them)."""
        self._check_batch(request)
        name = request.spec.name
        check_spec(request.spec)
        ensemble = self.ensembles.get(name)
        if ensemble is not None:
            return await ensemble.predict(request, call, self._forward)
        route = self.routes.get(name)
        if route is None:
            return await self._forward(name, request, call), None
        servable = route.choose(call.request_key)
        self.metrics.route_choices.labels(route.name, servable).inc()
        request = request.for_servable(servable, keep_version=True)
        prediction = await self._forward(servable, request, call)
        if route.mirror():
            self._mirror(route, request, prediction, call.request_id)
        return prediction, None

    def _check_batch(self, request: Predict) -> None:
        for name, array in request.inputs.items():
            if array.ndim and array.shape[0] > self._max_batch:
                raise InvalidInput(
                    f"Input {name!r} has batch size {array.shape[0]}, over the limit of {self._max_batch}"
                )

    async def _forward(self, servable: str, request: Predict, call: CallContext) -> Prediction:
        if servable in self.routes:  # an ensemble member may be a route
            servable = self.routes[servable].choose(call.request_key)
            request = request.for_servable(servable, keep_version=True)
        prediction = await self._coalescer.predict(servable, request, call, self._sender(servable))
        call.answered_by(servable, prediction.version_text)
        return prediction

    def _sender(self, servable: str) -> Send:
        send = self._senders.get(servable)
        if send is None:
            upstream = self.pool[self.catalog.upstream_for(servable)]

            async def send(request: Predict, batch_call: CallContext) -> Prediction:
                response = await upstream.call("Predict", request.to_proto(), batch_call, servable)
                return Prediction.from_proto(response)

            self._senders[servable] = send
        return send

    def _mirror(self, route: Route, request: Predict, primary: Prediction, request_id: str) -> None:
        candidate = route.shadow or ""
        if len(self._shadows) >= _SHADOW_IN_FLIGHT:
            self.metrics.shadow_failed.labels(route.name, candidate).inc()
            return
        task = asyncio.create_task(self._shadow(route.name, candidate, request, primary, request_id))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, route: str, candidate: str, request: Predict, primary: Prediction, request_id: str) -> None:
        call = CallContext(request_id=request_id, deadline=time.monotonic() + self.settings.timeouts.request_s)
        try:
            with tracing.span(f"shadow {candidate}", {"tensorgate.route": route}):
                answer = await self._forward(candidate, request.for_servable(candidate, keep_version=True), call)
            expected = top_classes(primary.outputs)
            got = top_classes(answer.outputs)
        except ServingError as error:
            log.info("shadow %s -> %s failed: %s (request %s)", route, candidate, error.message, request_id)
            self.metrics.shadow_failed.labels(route, candidate).inc()
            return
        if expected is None or got is None or expected.shape != got.shape:
            self.metrics.shadow_failed.labels(route, candidate).inc()
            return
        self.metrics.shadow_compared.labels(route, candidate).inc(expected.size)
        self.metrics.shadow_agreed.labels(route, candidate).inc(int((expected == got).sum()))

    async def classify(self, request: Any, call: CallContext) -> Any:
        raise Unimplemented("The gateway answers :predict only, not :classify")

    async def regress(self, request: Any, call: CallContext) -> Any:
        raise Unimplemented("The gateway answers :predict only, not :regress")

    # Metadata and status ---------------------------------------------------------------------------

    def _stand_in(self, name: str) -> str:
        """The servable that answers metadata and status for a route or an ensemble."""
        if name in self.routes:
            return self.routes[name].primary
        if name in self.ensembles:
            return self.ensembles[name].config.members[0]
        return name

    async def metadata(self, request: Any, call: CallContext) -> Any:
        name = request.model_spec.name
        check_spec(request.model_spec)
        servable = self._stand_in(name)
        if servable != name:
            request.model_spec.name = servable
            request.model_spec.ClearField("version_choice")
        upstream = self.pool[self.catalog.upstream_for(servable)]
        response = await upstream.call("GetModelMetadata", request, call, servable, limit=False)
        call.answered_by(servable, str(response.model_spec.version.value))
        if servable != name:
            response.model_spec.name = name
        return response

    async def status(self, request: Any, call: CallContext) -> Any:
        name = request.model_spec.name
        check_spec(request.model_spec)
        if name in self.ensembles:
            return self._ensemble_status(name)
        servable = self._stand_in(name)
        request.model_spec.name = servable
        upstream = self.pool[self.catalog.upstream_for(servable)]
        response = await upstream.call("GetModelStatus", request, call, servable, limit=False)
        call.answered_by(servable, "")
        return response

    def _ensemble_status(self, name: str) -> Any:
        config = self.ensembles[name].config
        ready = sum(1 for m in config.members if self.catalog.states.get(m) and self.catalog.states[m].available)
        response = protos.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = 1
        status.state = AVAILABLE if ready >= config.needed else 0
        if ready < config.needed:
            status.status.error_code = 14  # UNAVAILABLE
            status.status.error_message = f"{ready} of {len(config.members)} members available; quorum {config.needed}"
        return response

    async def input_dtypes(self, spec: ModelSpec, call: CallContext) -> dict[str, int]:
        """Input name -> DataType of a signature, from GetModelMetadata (cached), for REST JSON decoding."""
        key = (spec.name, spec.version, spec.label)
        cached = self._metadata.get(key)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            request = protos.GetModelMetadataRequest()
            ModelSpec(spec.name, spec.version, spec.label).fill(request.model_spec)
            request.metadata_field.append("signature_def")
            response = await self.metadata(request, call)
            signatures = protos.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            inputs = {
                signature_name: {input_name: info.dtype for input_name, info in definition.inputs.items()}
                for signature_name, definition in signatures.signature_def.items()
            }
            cached = (now + self.settings.timeouts.metadata_ttl_s, inputs)
            self._metadata[key] = cached
        signature_key = spec.signature or "serving_default"
        dtypes = cached[1].get(signature_key)
        if dtypes is None:
            raise InvalidInput(f'Serving signature name: "{signature_key}" not found in signature def')
        return dtypes
