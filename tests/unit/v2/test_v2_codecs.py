"""The v2 codecs and metadata, each error message exactly; bodies made by tritonclient where it can."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from serving import protos
from serving.errors import InvalidInput
from serving.v2 import grpc_codec, metadata, rest
from serving.v2.infer import InferRequest, RequestedOutput

IMAGE = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)


def _triton_body(binary: bool, outputs: list[tuple[str, bool]] | None = None) -> tuple[bytes, str | None]:
    tensor = triton_http.InferInput("image", list(IMAGE.shape), "FP32")
    tensor.set_data_from_numpy(IMAGE, binary_data=binary)
    requested = [triton_http.InferRequestedOutput(name, binary_data=b) for name, b in outputs or ()]
    body, length = triton_http.InferenceServerClient.generate_request_body(
        [tensor], outputs=requested or None, request_id="abc", parameters={"signature_name": "serving_default"}
    )
    return body, None if length is None else str(length)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_bodies_decode(binary: bool) -> None:
    body, length = _triton_body(binary, [("probabilities", binary), ("class_id", False)])
    request = rest.decode_request(body, length, "cnn", "2")
    assert (request.model, request.version, request.id, request.signature) == ("cnn", "2", "abc", "serving_default")
    np.testing.assert_array_equal(request.inputs["image"], IMAGE)
    assert request.inputs["image"].dtype == np.float32
    assert request.outputs == [RequestedOutput("probabilities", binary), RequestedOutput("class_id", False)]


def test_no_requested_outputs_means_every_output_in_binary_for_tritonclient() -> None:
    body, length = _triton_body(True)
    request = rest.decode_request(body, length, "cnn", "")
    assert request.outputs is None and request.binary_outputs is True


def test_answers_decode_with_tritonclient() -> None:
    probabilities = np.random.default_rng(0).random((2, 10)).astype(np.float32)
    outputs = [("probabilities", "FP32", probabilities, True), ("class_id", "INT64", np.array([3, 9]), False)]
    body, length = rest.encode_response("cnn", "1", "abc", outputs)
    assert length is not None and length < len(body)
    result = triton_http.InferResult.from_response_body(body, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)
    np.testing.assert_array_equal(result.as_numpy("class_id"), [3, 9])
    assert result.get_response()["id"] == "abc" and result.get_response()["model_version"] == "1"
    json_body, json_length = rest.encode_response("cnn", "1", "", outputs[1:])
    assert json_length is None
    assert orjson.loads(json_body) == {
        "model_name": "cnn",
        "model_version": "1",
        "outputs": [{"name": "class_id", "datatype": "INT64", "shape": [2], "data": [3, 9]}],
    }


JSON_PART = "the length of the JSON part"


def _json(inputs: list[dict], **rest_of_body: object) -> bytes:
    return orjson.dumps({"inputs": inputs, **rest_of_body})


def _input(**fields: object) -> dict:
    return {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0], **fields}


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{", None, "The request body is not valid JSON: "),
        (b"[]", None, "The request body must be a JSON object, got a list"),
        (_json([]), None, "inputs must be a non-empty list of tensors"),
        (_json([_input(datatype="FLOAT")]), None, "input 'x': unknown datatype 'FLOAT'; the protocol's datatypes are"),
        (_json([_input(datatype="BF16")]), None, "input 'x': datatype BF16 is not supported by this server"),
        (_json([_input(shape=[3])]), None, "input 'x': 2 values, but shape [3] holds 3"),
        (_json([_input(shape=[-2])]), None, "input 'x': shape [-2] must hold non-negative integers"),
        (_json([_input(shape="2")]), None, "input 'x': shape must be a list of dimensions, got str"),
        (_json([_input(data=[1, "a"])]), None, "input 'x': data of FP32 must be numbers, got strings"),
        (_json([_input(data=[[1], [2, 3]], shape=[3])]), None, "input 'x': data is a nested list of uneven lengths"),
        (_json([_input(datatype="INT8", data=[1, 300])]), None, "input 'x': a value is out of the range of INT8"),
        (_json([_input(datatype="INT32", data=[1, 2.5])]), None, "input 'x': data of INT32 must be integers, got non"),
        (_json([_input(data=[1e39, 0])]), None, "input 'x': a value is out of the range of FP32"),
        (_json([_input(datatype="BOOL", data=[1, 0])]), None, "input 'x': data of BOOL must be true or false, got int"),
        (_json([_input(datatype="BYTES", data=["a", 1])]), None, "input 'x': data of BYTES must be strings, got a nu"),
        (_json([_input(), _input()]), None, "input 'x' is given twice"),
        (_json([_input(data=None)]), None, "input 'x' has no data (nor a binary_data_size)"),
        (_json([_input()], id=5), None, "id must be a string, got a number"),
        (_json([_input()], parameters={"timeout": -1}), None, "request: parameter timeout must be a non-negative"),
        (_json([_input()], outputs=[{"name": 1}]), None, "every requested output must be an object with a name"),
        (
            _json([_input()], outputs=[{"name": "y", "parameters": {"classification": 2}}]),
            None,
            "output 'y': the classification extension is not supported",
        ),
        (_json([_input()]), "abc", "Inference-Header-Content-Length must be a number of bytes, got 'abc'"),
        (_json([_input()]), "-1", "Inference-Header-Content-Length must be a number of bytes, got '-1'"),
        (_json([_input()]), "0", "Inference-Header-Content-Length is 0, but the body has 72 bytes (the JSON header"),
        (_json([_input()]), "999", "Inference-Header-Content-Length is 999, but the body has 72 bytes"),
        ((_json([_input()]), b"xy"), JSON_PART, "2 bytes of binary data after the last input's binary_data_size"),
        (
            (_json([_input(data=None, parameters={"binary_data_size": 8})]), b"\0" * 4),
            JSON_PART,
            "input 'x': binary_data_size is 8, but only 4 bytes of binary data remain after the JSON header",
        ),
        (
            (_json([_input(data=None, parameters={"binary_data_size": 4})]), b"\0" * 4),
            JSON_PART,
            "input 'x': 4 bytes of data, but shape [2] of FP32 needs 8",
        ),
        (
            (_json([_input(parameters={"binary_data_size": 0})]), b""),
            JSON_PART,
            "input 'x' has both data and binary_data_size; send one",
        ),
    ],
)
def test_malformed_bodies_get_their_own_message(
    body: bytes | tuple[bytes, bytes], header_length: str | None, message: str
) -> None:
    if isinstance(body, tuple):  # (JSON header, binary data)
        header_length = str(len(body[0])) if header_length == JSON_PART else header_length
        body = body[0] + body[1]
    with pytest.raises(InvalidInput) as raised:
        rest.decode_request(body, header_length, "m", "")
    assert raised.value.message.startswith(message), raised.value.message


def test_bytes_tensors_in_binary() -> None:
    tensor = triton_http.InferInput("text", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"\x00\xff"], [b""]], dtype=object), binary_data=True)
    body, length = triton_http.InferenceServerClient.generate_request_body([tensor])
    request = rest.decode_request(body, str(length), "m", "")
    assert request.inputs["text"].tolist() == [[b"\x00\xff"], [b""]]


def test_grpc_requests_from_tritonclient_decode() -> None:
    tensor = triton_grpc.InferInput("image", list(IMAGE.shape), "FP32")
    tensor.set_data_from_numpy(IMAGE)
    message = protos.ModelInferRequest(model_name="cnn", model_version="1", id="r")
    message.inputs.append(
        protos.ModelInferRequest.InferInputTensor.FromString(tensor._get_tensor().SerializeToString())
    )
    message.raw_input_contents.append(tensor._get_content())
    message.parameters["timeout"].int64_param = 2_000_000
    message.outputs.add(name="class_id")
    request = grpc_codec.decode_request(message)
    np.testing.assert_array_equal(request.inputs["image"], IMAGE)
    assert (request.id, request.timeout_us, request.outputs) == ("r", 2_000_000, [RequestedOutput("class_id")])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: m.raw_input_contents.extend([b"", b""]), "raw_input_contents holds 2 entries for 1 inputs"),
        (lambda m: m.inputs[0].contents.fp32_contents.append(1.0), "input 'x': 1 values in fp32_contents, but shape"),
        (lambda m: setattr(m.inputs[0], "datatype", "FP16"), "input 'x': FP16 data travels in raw_input_contents only"),
        (lambda m: m.inputs[0].contents.int_contents.extend([1, 2]), "input 'x': 0 values in fp32_contents"),
    ],
)
def test_malformed_grpc_requests_get_their_own_message(build, message: str) -> None:
    request = protos.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    build(request)
    with pytest.raises(InvalidInput) as raised:
        grpc_codec.decode_request(request)
    assert raised.value.message.startswith(message), raised.value.message


def test_grpc_int_contents_out_of_range() -> None:
    request = protos.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="INT8", shape=[2]).contents.int_contents.extend([1, -200])
    with pytest.raises(InvalidInput, match="input 'x': a value in int_contents is out of the range of INT8"):
        grpc_codec.decode_request(request)


def test_grpc_answers_decode_with_tritonclient() -> None:
    from tritonclient.grpc import service_pb2

    outputs = [("probabilities", "FP32", np.ones((1, 10), np.float32)), ("class_id", "INT64", np.array([4]))]
    ours = grpc_codec.encode_response("cnn", "1", "r", outputs)
    result = triton_grpc.InferResult(service_pb2.ModelInferResponse.FromString(ours.SerializeToString()))
    np.testing.assert_array_equal(result.as_numpy("probabilities"), np.ones((1, 10), np.float32))
    assert result.as_numpy("class_id").tolist() == [4]


def _signature_def() -> object:
    definition = protos.SignatureDef()
    image = definition.inputs["image"]
    image.dtype = 1  # DT_FLOAT
    for size in (-1, 28, 28, 1):
        image.tensor_shape.dim.add().size = size
    definition.outputs["probabilities"].dtype = 1
    for size in (-1, 10):
        definition.outputs["probabilities"].tensor_shape.dim.add().size = size
    definition.outputs["class_id"].dtype = 9  # DT_INT64
    definition.outputs["class_id"].tensor_shape.dim.add().size = -1
    return definition


def test_model_metadata_from_a_signature() -> None:
    signature = metadata.signature_of(_signature_def())
    assert metadata.model_metadata("cnn", ["1", "2"], "tensorflow_savedmodel", signature) == {
        "name": "cnn",
        "versions": ["1", "2"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
        "outputs": [
            {"name": "class_id", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        ],
    }
    message = metadata.model_metadata_message("cnn", ["1"], "tensorflow_savedmodel", signature)
    assert [(t.name, t.datatype, list(t.shape)) for t in message.outputs] == [
        ("class_id", "INT64", [-1]),
        ("probabilities", "FP32", [-1, 10]),
    ]


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ({"img": np.zeros((1, 28, 28, 1), np.float32)}, None, "unexpected inference input 'img' for model 'cnn'; it"),
        ({"image": np.zeros((1, 28, 28, 1), np.int32)}, None, "unexpected datatype INT32 for inference input 'image'"),
        ({"image": np.zeros((1, 784), np.float32)}, None, "unexpected shape for input 'image' of model 'cnn': expec"),
        ({}, None, "model 'cnn' needs input 'image'; it was not sent"),
        ({"image": np.zeros((3, 28, 28, 1), np.float32)}, ["nope"], "unexpected inference output 'nope' for model"),
    ],
)
def test_requests_are_checked_against_the_signature(inputs: dict, outputs: list[str] | None, message: str) -> None:
    request = InferRequest("cnn", "", inputs, outputs=[RequestedOutput(n) for n in outputs] if outputs else None)
    with pytest.raises(InvalidInput) as raised:
        metadata.check_request(request, metadata.signature_of(_signature_def()))
    assert raised.value.message.startswith(message), raised.value.message


def test_a_fitting_request_passes_the_check() -> None:
    request = InferRequest("cnn", "", {"image": np.zeros((5, 28, 28, 1), np.float32)}, datatypes={"image": "FP32"})
    metadata.check_request(request, metadata.signature_of(_signature_def()))


def test_compressed_bodies() -> None:
    import gzip
    import zlib

    from serving.errors import PayloadTooLarge

    body = _json([_input()])
    assert rest.decompress(gzip.compress(body), "gzip", 1000) == body
    assert rest.decompress(zlib.compress(body), b"deflate", 1000) == body
    assert rest.decompress(body, "identity", 1000) == body
    with pytest.raises(PayloadTooLarge, match="over the limit of 100 bytes once decompressed"):
        rest.decompress(gzip.compress(b"0" * 10_000), "gzip", 100)
    with pytest.raises(InvalidInput, match="Content-Encoding 'br' is not supported"):
        rest.decompress(body, "br", 1000)
    with pytest.raises(InvalidInput, match="The body is not valid gzip data"):
        rest.decompress(body, "gzip", 1000)
    with pytest.raises(InvalidInput, match="The body's deflate data is cut off"):
        rest.decompress(zlib.compress(body)[:20], "deflate", 1000)
