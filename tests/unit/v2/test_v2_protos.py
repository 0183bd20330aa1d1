"""The v2 protocol's descriptors: current with the installed tritonclient and wire-compatible with it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from serving import protos
from serving.protos.build import build_inference_set


def test_committed_inference_set_matches_the_installed_tritonclient():
    built = build_inference_set().SerializeToString(deterministic=True)
    assert protos.INFERENCE_SET_PATH.read_bytes() == built, (
        "serving/protos/inference.binpb is stale: run `make protos` after upgrading tritonclient"
    )


def test_v2_protos_load_without_tensorflow_or_tritonclient():
    code = (
        "import sys; from serving import protos; protos.ModelInferRequest(model_name='x'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tritonclient')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_messages_are_wire_compatible_with_tritonclients():
    from tritonclient.grpc import service_pb2

    ours = protos.ModelInferRequest(model_name="cnn", model_version="1", id="r")
    tensor = ours.inputs.add(name="image", datatype="FP32", shape=[1, 28, 28, 1])
    tensor.parameters["p"].int64_param = 3
    ours.raw_input_contents.append(np.ones(784, np.float32).tobytes())
    theirs = service_pb2.ModelInferRequest.FromString(ours.SerializeToString())
    assert (theirs.model_name, theirs.model_version, theirs.id) == ("cnn", "1", "r")
    assert list(theirs.inputs[0].shape) == [1, 28, 28, 1] and theirs.inputs[0].parameters["p"].int64_param == 3
    assert theirs.raw_input_contents[0] == ours.raw_input_contents[0]


def test_the_service_lists_the_protocols_unary_methods():
    names = [method.name for method in protos.INFERENCE_SERVICE.methods]
    assert names[:6] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]
    assert "ModelStreamInfer" not in names  # a stream: not served
