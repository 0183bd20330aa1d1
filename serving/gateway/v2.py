"""The Open Inference Protocol (KServe v2) on the gateway, for both fronts (REST and gRPC).

A v2 request is decoded by ``serving.v2`` into named arrays, checked against the model's signature
(read from the upstream's GetModelMetadata and cached), and handed to the gateway's one prediction
path, so names, versions and labels, routes, shadows, ensembles, limits and coalescing work as they do
for TF Serving's API. Upstream stays TF Serving's gRPC API.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import metadata as package_metadata
from typing import Any

import numpy as np

from serving import protos
from serving.errors import NotFound
from serving.gateway.catalog import AVAILABLE
from serving.gateway.context import CallContext
from serving.gateway.service import Gateway, check_name
from serving.predict import ModelSpec, Predict
from serving.v2 import datatypes
from serving.v2.infer import InferRequest
from serving.v2.metadata import ENSEMBLE_PLATFORM, PLATFORMS, Signature, TensorSpec, check_request, pick, signatures_of

SERVER_NAME = "tensorgate"
EXTENSIONS = ("binary_tensor_data",)


def _server_version() -> str:
    try:
        return package_metadata.version("tensorgate")
    except package_metadata.PackageNotFoundError:
        return "0.1.0"


SERVER_VERSION = _server_version()
Output = tuple[str, str, np.ndarray]  # name, datatype, array


def parse_version(version: str) -> tuple[int | None, str | None]:
    """A v2 version string as TF Serving's (version, label): digits are a version, anything else a label."""
    if not version:
        return None, None
    if version.isdigit() and version.isascii():
        number = int(version)
        if number >= 2**63:
            raise NotFound(f"No version {version}: versions are 64-bit integers")
        return number, None
    return None, version


def version_spec(spec: Any, version: str) -> None:
    """Fill a ``tensorflow.serving.ModelSpec``'s version or label from a v2 version string."""
    number, label = parse_version(version)
    if number is not None:
        spec.version.value = number
    elif label is not None:
        spec.version_label = label


class V2:
    """The protocol's operations over a Gateway; fronts only decode, call these and encode."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._ttl = gateway.settings.timeouts.metadata_ttl_s
        self.max_body = gateway.settings.limits.max_body_bytes  # also once a compressed body is inflated
        self._signatures: dict[tuple[str, str], tuple[float, dict[str, Signature]]] = {}

    # Health and metadata -------------------------------------------------------------------------

    def server_ready(self) -> tuple[bool, str]:
        return self.gateway.catalog.readiness()

    @staticmethod
    def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}

    async def model_ready(self, name: str, version: str, call: CallContext) -> bool:
        """Whether the model (that version, or any) is AVAILABLE upstream; NotFound for unknown names."""
        check_name(name)
        request = protos.GetModelStatusRequest()
        request.model_spec.name = name
        version_spec(request.model_spec, version)
        response = await self.gateway.status(request, call)
        return any(status.state == AVAILABLE for status in response.model_version_status)

    async def model_metadata(self, name: str, version: str, call: CallContext) -> tuple[list[str], str, Signature]:
        """(versions, platform, serving_default signature) of a servable, route or ensemble."""
        signature = pick(await self.signatures(name, version, call), "", name)
        return self._versions(name, version), self._platform(name), signature

    def _versions(self, name: str, version: str) -> list[str]:
        if version:
            return [version]
        if name in self.gateway.ensembles:
            return ["1"]
        route = self.gateway.routes.get(name)
        state = self.gateway.catalog.states.get(route.primary if route else name)
        return sorted(state.available, key=int) if state else []

    def _platform(self, name: str) -> str:
        if name in self.gateway.ensembles:
            return ENSEMBLE_PLATFORM
        route = self.gateway.routes.get(name)
        platform = self.gateway.catalog.platforms.get(route.primary if route else name, "")
        return PLATFORMS.get(platform, platform)

    async def signatures(self, name: str, version: str, call: CallContext) -> dict[str, Signature]:
        """Every signature of a name (cached for ``metadata_ttl_s``); an ensemble's are its first member's
        inputs with the ensemble's own outputs."""
        key = (name, version)
        now = time.monotonic()
        cached = self._signatures.get(key)
        if cached is None or cached[0] < now:
            request = protos.GetModelMetadataRequest()
            request.model_spec.name = name
            version_spec(request.model_spec, version)
            request.metadata_field.append("signature_def")
            found = signatures_of(await self.gateway.metadata(request, call))
            ensemble = self.gateway.ensembles.get(name)
            if ensemble is not None:
                found = {key: _ensemble_signature(s, len(ensemble.config.members)) for key, s in found.items()}
            cached = (now + self._ttl, found)
            self._signatures[key] = cached
        return cached[1]

    # Inference -------------------------------------------------------------------------------------

    async def infer(self, request: InferRequest, call: CallContext) -> tuple[str, list[Output]]:
        """(model version, outputs in the order to answer them) for a decoded request."""
        check_name(request.model)
        call.method = "infer"
        if request.timeout_us:
            call.deadline = min(call.deadline, time.monotonic() + request.timeout_us / 1e6)
        signature = pick(await self.signatures(request.model, request.version, call), request.signature, request.model)
        check_request(request, signature)
        outputs, version = await self._predict(request, call)
        if request.outputs is None:
            names: Sequence[str] = sorted(outputs)
        else:
            names = [output.name for output in request.outputs]
        answer = []
        for name in names:
            array = outputs.get(name)
            if array is None:
                raise NotFound(f"model '{request.model}' did not return output '{name}'")
            answer.append((name, datatypes.of_array(array), array))
        return version, answer

    async def _predict(self, request: InferRequest, call: CallContext) -> tuple[dict[str, np.ndarray], str]:
        """The gateway's one prediction path, from arrays to arrays."""
        version, label = parse_version(request.version)
        spec = ModelSpec(request.model, version, label, request.signature)
        prediction = await self.gateway.predict(Predict(spec, request.inputs), call)
        return prediction.outputs, call.version or prediction.version_text


def _ensemble_signature(member: Signature, members: int) -> Signature:
    """A gateway ensemble's signature: its members' inputs; probabilities, class_id and member votes."""
    outputs = {
        "class_id": TensorSpec("class_id", "INT64", (-1,)),
        "member_class_ids": TensorSpec("member_class_ids", "INT64", (-1, members)),
    }
    probabilities = member.outputs.get("probabilities")
    if probabilities is not None:
        outputs["probabilities"] = TensorSpec("probabilities", "FP32", probabilities.shape)
    return Signature(member.inputs, dict(sorted(outputs.items())))
