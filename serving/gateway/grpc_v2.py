"""``inference.GRPCInferenceService`` (the Open Inference Protocol over gRPC) on the gateway's gRPC port.

The methods the protocol defines are served; Triton's extensions in the same service (model
configuration, statistics, repository, shared memory, trace and log settings) answer UNIMPLEMENTED.
``ServerLive`` and ``ServerReady`` need no API key (probes, like gRPC health); the rest do.
"""

from __future__ import annotations

from typing import Any

from serving import protos
from serving.gateway.context import CallContext
from serving.gateway.v2 import V2
from serving.v2 import grpc_codec, metadata

PUBLIC = ("ServerLive", "ServerReady")


class InferenceServicer:
    def __init__(self, v2: V2) -> None:
        self._v2 = v2

    def methods(self) -> dict[str, tuple[str, Any]]:
        """Method name -> (metric label, implementation)."""
        return {
            "ServerLive": ("v2_health", self.server_live),
            "ServerReady": ("v2_health", self.server_ready),
            "ModelReady": ("v2_ready", self.model_ready),
            "ServerMetadata": ("v2_metadata", self.server_metadata),
            "ModelMetadata": ("v2_metadata", self.model_metadata),
            "ModelInfer": ("infer", self.model_infer),
        }

    async def server_live(self, request: Any, call: CallContext) -> Any:
        return protos.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, call: CallContext) -> Any:
        return protos.ServerReadyResponse(ready=self._v2.server_ready()[0])

    async def model_ready(self, request: Any, call: CallContext) -> Any:
        return protos.ModelReadyResponse(ready=await self._v2.model_ready(request.name, request.version, call))

    async def server_metadata(self, request: Any, call: CallContext) -> Any:
        return protos.ServerMetadataResponse(**V2.server_metadata())

    async def model_metadata(self, request: Any, call: CallContext) -> Any:
        versions, platform, signature = await self._v2.model_metadata(request.name, request.version, call)
        return metadata.model_metadata_message(request.name, versions, platform, signature)

    async def model_infer(self, request: Any, call: CallContext) -> Any:
        decoded = grpc_codec.decode_request(request)
        version, outputs = await self._v2.infer(decoded, call)
        return grpc_codec.encode_response(decoded.model, version, decoded.id, outputs)
