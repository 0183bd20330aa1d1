"""A small real TF Serving stand-in for gateway tests: PredictionService + ModelService with numpy.

``python -m tests.integration.gateway.fake_upstream --port P --models cnn,lstm [--shift lstm=1]
[--delay cnn=0.5] [--log FILE]``. Each model answers the contract: ``image`` float32 [batch,28,28,1]
-> ``probabilities`` [batch,10] and ``class_id`` [batch], where the class is the mean pixel intensity
in tenths of 256 (plus the model's shift, mod 10). ``--log`` appends one line per call:
``method model request-id``. ``--max-batch m=N`` makes model m refuse batches over N rows, as TF
Serving's batching does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving import protos
from serving.tensors import DT, from_numpy, to_numpy

NOT_FOUND = grpc.StatusCode.NOT_FOUND


def classes_of(images: np.ndarray, shift: int = 0) -> np.ndarray:
    means = images.reshape(images.shape[0], -1).mean(axis=1)
    return ((np.clip(means, 0, 255) * 10 // 256).astype(np.int64) + shift) % 10


def probabilities_of(classes: np.ndarray) -> np.ndarray:
    probabilities = np.full((classes.shape[0], 10), 0.02, dtype=np.float32)
    probabilities[np.arange(classes.shape[0]), classes] = 0.82
    return probabilities


class FakeUpstream:
    def __init__(self, models: list[str], shifts: dict[str, int], delays: dict[str, float], log: Path | None):
        self.models = models
        self.shifts = shifts
        self.delays = delays
        self.max_batch: dict[str, int] = {}
        self.log = log.open("a", buffering=1) if log else None

    def _record(self, method: str, model: str, context: Any) -> None:
        if self.log is not None:
            metadata = dict(context.invocation_metadata() or ())
            self.log.write(f"{method} {model} {metadata.get('x-request-id', '-')}\n")

    async def _check(self, spec: Any, context: Any) -> int:
        if spec.name not in self.models:
            await context.abort(NOT_FOUND, f"Servable not found for request: Latest({spec.name})")
        version = spec.version.value if spec.HasField("version") else 1
        if version != 1 or (spec.version_label and spec.version_label != "stable"):
            label = spec.version_label or version
            await context.abort(NOT_FOUND, f"Servable not found for request: Specific({spec.name}, {label})")
        return 1

    async def predict(self, request: Any, context: Any) -> Any:
        self._record("Predict", request.model_spec.name, context)
        version = await self._check(request.model_spec, context)
        delay = self.delays.get(request.model_spec.name, 0.0)
        if delay:
            await asyncio.sleep(delay)
        if "image" not in request.inputs:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found: image")
        images = to_numpy(request.inputs["image"])
        if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"image must be [batch,28,28,1], got {list(images.shape)}"
            )
        limit = self.max_batch.get(request.model_spec.name)
        if limit is not None and images.shape[0] > limit:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Task size {images.shape[0]} is larger than maximum input batch size {limit}",
            )
        classes = classes_of(images, self.shifts.get(request.model_spec.name, 0))
        response = protos.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        from_numpy(probabilities_of(classes), out=response.outputs["probabilities"])
        from_numpy(classes, out=response.outputs["class_id"])
        return response

    async def metadata(self, request: Any, context: Any) -> Any:
        self._record("GetModelMetadata", request.model_spec.name, context)
        version = await self._check(request.model_spec, context)
        signatures = protos.SignatureDefMap()
        signature = signatures.signature_def["serving_default"]
        signature.method_name = "tensorflow/serving/predict"
        image = signature.inputs["image"]
        image.name, image.dtype = "serving_default_image:0", DT["DT_FLOAT"].number
        for size in (-1, 28, 28, 1):
            image.tensor_shape.dim.add().size = size
        for name, dtype, dims in (("probabilities", "DT_FLOAT", (-1, 10)), ("class_id", "DT_INT64", (-1,))):
            output = signature.outputs[name]
            output.name, output.dtype = f"StatefulPartitionedCall:{name}", DT[dtype].number
            for size in dims:
                output.tensor_shape.dim.add().size = size
        response = protos.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(signatures)
        return response

    async def status(self, request: Any, context: Any) -> Any:
        self._record("GetModelStatus", request.model_spec.name, context)
        if request.model_spec.name not in self.models:
            await context.abort(NOT_FOUND, f"Could not find any versions of model {request.model_spec.name}")
        response = protos.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = 1
        status.state = 30  # AVAILABLE
        return response


def _pairs(values: list[str], kind: type) -> dict[str, Any]:
    return {name: kind(value) for name, _, value in (item.partition("=") for item in values)}


async def serve(arguments: argparse.Namespace) -> None:
    shifts, delays = _pairs(arguments.shift, int), _pairs(arguments.delay, float)
    fake = FakeUpstream(arguments.models.split(","), shifts, delays, arguments.log)
    fake.max_batch = _pairs(arguments.max_batch, int)
    size = 64 * 1024 * 1024
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]
    )
    server.add_generic_rpc_handlers(
        (
            protos.PREDICTION_SERVICE.handler({"Predict": fake.predict, "GetModelMetadata": fake.metadata}),
            protos.MODEL_SERVICE.handler({"GetModelStatus": fake.status}),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{arguments.port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="cnn,lstm,transformer")
    parser.add_argument("--shift", action="append", default=[])
    parser.add_argument("--delay", action="append", default=[])
    parser.add_argument("--max-batch", action="append", default=[], help="model=rows; more: INVALID_ARGUMENT")
    parser.add_argument("--log", type=Path)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
