"""Hostile input, REST and gRPC: every case answered with the right 4xx / status code and a useful
``{"error"}``, and the servers still healthy and correct after each group.

A real gateway in front of a real model server (the quick cnn). REST cases go to the gateway and,
where they apply (TF Serving's API: no batch limit, no image API there), to the model server's own
REST port; gRPC cases go to the gateway's gRPC front. Groups: body size and framing, JSON structure,
batch size, images (empty, truncated, decompression bombs), NaN/Inf, dtypes, unicode names, path
traversal, slow clients (slowloris: bodies and headers sent a byte at a time, many connections at once,
while a normal client's predict latency is measured before and during).
"""

from __future__ import annotations

import base64
import functools
import io
import socket
import statistics
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import orjson

from loadtest.reliability import rawhttp, shapes
from loadtest.reliability.common import API_KEY, SERVABLE, CheckResult, Context, Server, timed
from serving import protos
from serving.tensors import from_numpy, to_numpy

KEY = {"x-api-key": API_KEY}
JSON_HEADERS = {**KEY, "Content-Type": "application/json"}
PREDICT = f"/v1/models/{SERVABLE}:predict"
CLASSIFY = f"/v1/classify/{SERVABLE}"
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


@dataclass
class Case:
    group: str
    name: str
    target: str  # gateway-rest | modelserver-rest | gateway-grpc
    expected: str  # "400", "400|404", "INVALID_ARGUMENT", ...
    got: str
    ok: bool
    seconds: float
    message: str = ""
    why: str = ""


@dataclass
class Limits:
    max_body: int
    max_batch: int
    max_pixels: int
    max_message: int
    header_s: float
    body_s: float
    ms_timeout_s: float


def reference_image() -> np.ndarray:
    return (np.arange(28 * 28, dtype=np.float32) * 7 % 256).reshape(1, 28, 28, 1)


def png_bytes(width: int, height: int, mode: str = "L") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (height, width), dtype=np.uint8)
    Image.fromarray(noise, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` gray pixels, with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def send(
    method: str, path: str | bytes, body: bytes = b"", headers: dict[str, str] | None = None, **options: Any
) -> Callable[[str], rawhttp.Reply]:
    """A request for ``Checker.rest`` to send to each target's base URL."""
    return lambda base: rawhttp.request(base, method, path, body, headers, **options)


def instances(rows: int, value: Any = 0.0) -> bytes:
    row = [[[value]] * 28] * 28
    return orjson.dumps({"instances": [row] * rows})


class Checker:
    """Runs cases, compares answers with expectations, checks health after each group."""

    def __init__(
        self, result: CheckResult, gateway: Server, modelserver: Server, limits: Limits, label: str = ""
    ) -> None:
        self.result, self.gateway, self.modelserver, self.limits = result, gateway, modelserver, limits
        self.label = label  # put before every case's group (which model server setting it ran under)
        self.cases: list[Case] = []
        self.channel = grpc.insecure_channel(
            gateway.grpc,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self.stub = protos.PREDICTION_SERVICE.stub(self.channel)
        self.status_stub = protos.MODEL_SERVICE.stub(self.channel)
        self.reference = self._grpc_predict(modelserver.grpc, reference_image(), key=False)
        self.health_checks = 0

    # REST ------------------------------------------------------------------------------------------

    def rest(
        self,
        group: str,
        name: str,
        expected: str,
        send: Callable[[str], rawhttp.Reply],
        targets: tuple[str, ...] = ("gateway", "modelserver"),
        why: str = "",
    ) -> None:
        for target in targets:
            base = self.gateway.rest if target == "gateway" else self.modelserver.rest
            try:
                reply = send(base)
            except OSError as error:
                reply = rawhttp.Reply(0, b"", {}, 0.0, f"{type(error).__name__}: {error}")
            wanted = expected.split("|")
            got = str(reply.status) if reply.status else f"no answer ({reply.error})"
            message = reply.error_text()
            ok = got in wanted
            if ok and reply.status >= 400 and message is None:
                ok = False
                got += f" without a JSON error body: {reply.body[:120]!r}"
            self._record(Case(group, name, f"{target}-rest", expected, got, ok, reply.seconds, message or "", why))

    # gRPC ------------------------------------------------------------------------------------------

    def grpc_case(
        self, group: str, name: str, expected: str, call: Callable[[], Any], why: str = "", target: str = "gateway"
    ) -> None:
        started = time.monotonic()
        got, message = "OK", ""
        try:
            call()
        except grpc.RpcError as error:
            got, message = error.code().name, error.details() or ""
        seconds = time.monotonic() - started
        ok = got in expected.split("|") and (got == "OK" or bool(message))
        self._record(Case(group, name, f"{target}-grpc", expected, got, ok, seconds, message, why))

    def predict_request(self, name: str = SERVABLE, array: np.ndarray | None = None) -> Any:
        request = protos.PredictRequest()
        request.model_spec.name = name
        from_numpy(reference_image() if array is None else array, out=request.inputs["image"])
        return request

    def grpc_predict(self, request: Any, timeout: float = 30.0) -> Any:
        return self.stub.Predict(request, timeout=timeout, metadata=tuple(KEY.items()))

    def _grpc_predict(self, target: str, array: np.ndarray, key: bool = True) -> dict[str, np.ndarray]:
        with grpc.insecure_channel(target) as channel:
            stub = protos.PREDICTION_SERVICE.stub(channel)
            response = stub.Predict(
                self.predict_request(array=array), timeout=30, metadata=tuple(KEY.items()) if key else ()
            )
        return {name: to_numpy(tensor) for name, tensor in response.outputs.items()}

    def _record(self, case: Case) -> None:
        case.group = self.label + case.group
        self.cases.append(case)
        if not case.ok:
            self.result.fail(f"{case.target} {case.group}/{case.name}: expected {case.expected}, got {case.got}")

    # health after each group -----------------------------------------------------------------------

    def healthy(self, group: str) -> None:
        self.health_checks += 1
        where = f"after {group}"
        for server in (self.gateway, self.modelserver):
            if not self.result.expect(server.managed.alive(), f"{server.managed.name} died {where}"):
                return
        try:
            health = httpx.get(self.gateway.rest + "/healthz", timeout=10)
            self.result.expect(health.status_code == 200, f"gateway /healthz {health.status_code} {where}")
            self._expect_reference(self.rest_predict(self.gateway.rest), f"gateway REST predict {where}")
            self._expect_reference(self.rest_predict(self.modelserver.rest), f"model server REST predict {where}")
            self._expect_reference(self._grpc_predict(self.gateway.grpc, reference_image()), f"gateway gRPC {where}")
        except (httpx.HTTPError, grpc.RpcError, KeyError, ValueError) as error:
            self.result.fail(f"normal request failed {where}: {error!r}")

    def rest_predict(self, base: str, client: httpx.Client | None = None) -> dict[str, np.ndarray]:
        body = orjson.dumps({"instances": reference_image().tolist()})
        poster = client.post if client is not None else httpx.post
        answer = poster(base + PREDICT, content=body, headers=JSON_HEADERS, timeout=30)
        answer.raise_for_status()
        prediction = answer.json()["predictions"][0]
        return {
            "class_id": np.asarray([prediction["class_id"]]),
            "probabilities": np.asarray([prediction["probabilities"]]),
        }

    def _expect_reference(self, outputs: dict[str, np.ndarray], what: str) -> None:
        same = int(outputs["class_id"][0]) == int(self.reference["class_id"][0]) and np.allclose(
            outputs["probabilities"], self.reference["probabilities"], atol=1e-4
        )
        self.result.expect(same, f"{what}: answer differs from the reference")

    def close(self) -> None:
        self.channel.close()


# the groups ----------------------------------------------------------------------------------------


def body_size(c: Checker) -> None:
    limit, group = c.limits.max_body, "body size"
    over = b" " * (limit + 1)
    why413 = "over the body limit (gateway: limits.max_body_bytes; model server: --rest_api_max_body_bytes)"
    c.rest(
        group,
        "over the limit, Content-Length",
        "413",
        send("POST", PREDICT, over, JSON_HEADERS),
        why=why413,
    )
    c.rest(
        group,
        "over the limit, chunked",
        "413",
        send("POST", PREDICT, over, JSON_HEADERS, chunked=True),
        why=why413,
    )
    c.rest(
        group,
        "Content-Length over the limit, small body",
        "413",
        lambda b: rawhttp.request(
            b, "POST", PREDICT, b"{}", JSON_HEADERS, length=limit + 1, timeout=c.limits.body_s + 10
        ),
        why="the declared length is refused before reading",
    )
    valid = instances(1)
    c.rest(
        group,
        "Content-Length under the body",
        "400",
        send("POST", PREDICT, valid, JSON_HEADERS, length=20),
        why="the server reads 20 bytes: not JSON",
    )
    c.rest(
        group,
        "no Content-Length, body sent",
        "400",
        send("POST", PREDICT, valid, JSON_HEADERS, length=None),
        why="HTTP/1.1 without a length has an empty body: not JSON",
    )
    c.rest(
        group,
        "Content-Length not a number",
        "400",
        send("POST", PREDICT, valid, {**JSON_HEADERS, "Content-Length": "12ab"}, length=None),
        why="malformed HTTP: the protocol layer answers",
    )
    c.rest(
        group,
        "Content-Length above the body, client stalls",
        "408",
        send("POST", PREDICT, valid, JSON_HEADERS, length=len(valid) + 100, timeout=60),
        why="the rest of the body never comes: body read timeout",
    )
    # gRPC: a message over the gateway's receive limit (channel.max_message_bytes)
    rows = c.limits.max_message // (28 * 28 * 4) + 1
    big = np.zeros((rows, 28, 28, 1), np.float32)
    c.grpc_case(
        group,
        f"message over the limit ({rows} rows)",
        "RESOURCE_EXHAUSTED",
        lambda: c.grpc_predict(c.predict_request(array=big)),
        why="grpc's max receive message size",
    )


def json_structure(c: Checker) -> None:
    group, depth = "JSON structure", 100_000
    cases = {
        f"{depth} nested arrays": b'{"instances": ' + b"[" * depth + b"]" * depth + b"}",
        f"{depth} unclosed arrays": b'{"instances": ' + b"[" * depth,
        f"{depth} nested objects": b'{"instances": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}",
        "top level is an array": b"[1, 2, 3]",
        "invalid UTF-8": b'{"instances": ["\xff\xfe"]}',
        "empty body": b"",
        "instances is empty": b'{"instances": []}',
        "wrong shape": b'{"instances": [[1, 2, 3]]}',
    }
    for name, body in cases.items():
        c.rest(
            group,
            name,
            "400",
            send("POST", PREDICT, body, JSON_HEADERS),
            why="malformed request",
        )
    c.rest(
        group,
        f"{depth} nested arrays, classify",
        "400",
        lambda b: rawhttp.request(
            b, "POST", CLASSIFY, cases[f"{depth} nested arrays"].replace(b"instances", b"images"), JSON_HEADERS
        ),
        targets=("gateway",),
    )
    c.grpc_case(
        group,
        "request bytes that do not parse",
        "INVALID_ARGUMENT",
        lambda: raw_grpc(c, b"\xff" * 64),
        why="not a PredictRequest",
    )


def raw_grpc(c: Checker, data: bytes) -> Any:
    method = c.channel.unary_unary("/tensorflow.serving.PredictionService/Predict", None, None)
    return method(data, timeout=30, metadata=tuple(KEY.items()))


def batch_size(c: Checker) -> None:
    group, rows = "batch size", c.limits.max_batch + 1
    why = "over limits.max_batch_size (TF Serving has no such limit: gateway only)"
    c.rest(
        group,
        f"{rows} instances",
        "400",
        send("POST", PREDICT, instances(rows, 0), JSON_HEADERS),
        targets=("gateway",),
        why=why,
    )
    images = orjson.dumps({"images": [[0] * 784] * rows})
    c.rest(
        group,
        f"{rows} images, classify",
        "400",
        send("POST", CLASSIFY, images, JSON_HEADERS),
        targets=("gateway",),
        why=why,
    )
    array = np.zeros((rows, 28, 28, 1), np.float32)
    c.grpc_case(
        group, f"{rows} rows", "INVALID_ARGUMENT", lambda: c.grpc_predict(c.predict_request(array=array)), why=why
    )
    declared = c.predict_request()
    declared.inputs["image"].ClearField("tensor_content")
    declared.inputs["image"].tensor_shape.dim[0].size = 10**12
    declared.inputs["image"].float_val.append(1.0)
    c.grpc_case(group, "declared 10^12 rows, one value", "INVALID_ARGUMENT", lambda: c.grpc_predict(declared), why=why)
    huge = c.predict_request()
    huge.inputs["image"].ClearField("tensor_content")
    for dim, size in zip(huge.inputs["image"].tensor_shape.dim, (1, 100_000, 100_000, 1), strict=True):
        dim.size = size
    huge.inputs["image"].float_val.append(1.0)
    c.grpc_case(
        group,
        "declared 1x100000x100000x1, one value",
        "INVALID_ARGUMENT",
        lambda: c.grpc_predict(huge),
        why="a tensor that would be 40 GB if broadcast",
    )


def images(c: Checker) -> None:
    group, png = "images", png_bytes(28, 28)
    image_headers = {**KEY, "Content-Type": "image/png"}

    def post(body: bytes, headers: dict[str, str] = image_headers) -> Callable[[str], rawhttp.Reply]:
        return send("POST", CLASSIFY, body, headers)

    def multipart(data: bytes) -> Callable[[str], rawhttp.Reply]:
        def send(base: str) -> rawhttp.Reply:
            started = time.monotonic()
            answer = httpx.post(base + CLASSIFY, files={"file": ("x.png", data, "image/png")}, headers=KEY, timeout=30)
            return rawhttp.Reply(answer.status_code, answer.content, dict(answer.headers), time.monotonic() - started)

        return send

    only = ("gateway",)
    c.rest(group, "0-byte PNG", "400", post(b""), only, "not an image")
    c.rest(group, "0-byte PNG, multipart", "400", multipart(b""), only, "not an image")
    c.rest(group, "truncated PNG (half)", "400", post(png[: len(png) // 2]), only, "not an image")
    c.rest(group, "PNG signature only", "400", post(png[:8]), only, "not an image")
    c.rest(group, "valid PNG (control)", "200", post(png), only, "a well-formed upload still works")
    why_bomb = "declared width x height over limits.max_image_pixels, refused before decoding"
    for width, height in ((100_000, 100_000), (65_535, 65_535), (1, 2**31 - 1)):
        bomb = bomb_png(width, height)
        c.rest(group, f"bomb {width}x{height} ({len(bomb)} bytes)", "413", post(bomb), only, why_bomb)
    bomb = bomb_png(100_000, 100_000)
    c.rest(
        group,
        "bomb 100000x100000, base64 JSON",
        "413",
        post(orjson.dumps({"image": base64.b64encode(bomb).decode()}), JSON_HEADERS),
        only,
        why_bomb,
    )
    c.rest(group, "bomb 100000x100000, multipart", "413", multipart(bomb), only, why_bomb)
    side = int(c.limits.max_pixels**0.5) + 1
    c.rest(group, f"bomb {side}x{side} (just over the limit)", "413", post(bomb_png(side, side)), only, why_bomb)


def nan_inf(c: Checker) -> None:
    group = "NaN/Inf"
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        body = instances(1, 0.0).replace(b"0.0", token, 1)
        c.rest(
            group,
            f"{token.decode()} in instances",
            "200",
            send("POST", PREDICT, body, JSON_HEADERS),
            why="TF Serving's API passes NaN/Inf to the model (as TF Serving does)",
        )
        pixels = b'{"image": [' + b", ".join([token] + [b"0"] * 783) + b"]}"
        c.rest(
            group,
            f"{token.decode()} pixel, classify",
            "400",
            send("POST", CLASSIFY, pixels, JSON_HEADERS),
            ("gateway",),
            "pixels must be 0..255",
        )
    for value in (1e39, -1.0, 256.0):
        body = orjson.dumps({"image": [value] + [0] * 783})
        c.rest(
            group,
            f"pixel {value:g}, classify",
            "400",
            send("POST", CLASSIFY, body, JSON_HEADERS),
            ("gateway",),
            "pixels must be 0..255",
        )
    for value in (np.nan, np.inf, -np.inf):
        array = reference_image().copy()
        array[0, 0, 0, 0] = value
        c.grpc_case(
            group,
            f"{value} in the tensor",
            "OK",
            functools.partial(c.grpc_predict, c.predict_request(array=array)),
            why="passed to the model (as TF Serving does)",
        )


def dtypes(c: Checker) -> None:
    group = "dtypes"
    for name, value in (("string", "a"), ("bool", True), ("object", {"x": 1}), ("null", None), ("list", [[1]])):
        body = orjson.dumps({"instances": [[[[value]] * 28] * 28]})
        c.rest(
            group,
            f"{name} where a float belongs",
            "400",
            send("POST", PREDICT, body, JSON_HEADERS),
            why="type mismatch",
        )
    body = orjson.dumps({"inputs": {"image": "not a tensor"}})
    c.rest(
        group,
        "string as the whole input",
        "400",
        send("POST", PREDICT, body, JSON_HEADERS),
        why="type mismatch",
    )
    for name, document in (
        ("bool images", {"images": [True]}),
        ("object image", {"image": {"a": 1}}),
        ("number image", {"image": 12345}),
        ("string pixels", {"image": ["a"] * 784}),
    ):
        body = orjson.dumps(document)
        c.rest(
            group,
            name + ", classify",
            "400",
            send("POST", CLASSIFY, body, JSON_HEADERS),
            ("gateway",),
            "type mismatch",
        )
    for dtype in ("DT_STRING", "DT_BOOL", "DT_DOUBLE", "DT_INT64"):
        request = c.predict_request()
        tensor = request.inputs["image"]
        tensor.ClearField("tensor_content")
        tensor.dtype = protos.DataType.values_by_name[dtype].number
        if dtype == "DT_STRING":
            tensor.string_val.extend([b"x"] * 784)
        elif dtype == "DT_BOOL":
            tensor.bool_val.extend([True] * 784)
        elif dtype == "DT_DOUBLE":
            tensor.double_val.extend([1.0] * 784)
        else:
            tensor.int64_val.extend([1] * 784)
        c.grpc_case(
            group,
            f"{dtype} tensor",
            "INVALID_ARGUMENT",
            functools.partial(c.grpc_predict, request),
            why="the signature wants DT_FLOAT",
        )
    truncated = c.predict_request()
    truncated.inputs["image"].tensor_content = truncated.inputs["image"].tensor_content[:100]
    c.grpc_case(
        group,
        "tensor_content truncated to 100 bytes",
        "INVALID_ARGUMENT",
        lambda: c.grpc_predict(truncated),
        why="content does not match the shape",
    )
    wrong_name = c.predict_request()
    wrong_name.inputs["imagez"].CopyFrom(wrong_name.inputs["image"])
    del wrong_name.inputs["image"]
    c.grpc_case(
        group, "unknown input name", "INVALID_ARGUMENT", lambda: c.grpc_predict(wrong_name), why="not in the signature"
    )


def names(c: Checker) -> None:
    group = "unicode names"
    for name, path in (
        ("unicode model, encoded", "/v1/models/%E6%A8%A1%E5%9E%8B%E2%9C%93:predict"),
        ("emoji model, encoded", "/v1/models/%F0%9F%98%80:predict"),
        ("NUL in model name", "/v1/models/cnn%00:predict"),
        ("10,000-character model name", "/v1/models/" + "x" * 10_000 + ":predict"),
    ):
        c.rest(
            group,
            name,
            "404",
            send("POST", path, instances(1), JSON_HEADERS),
            why="no such model",
        )
    c.rest(
        group,
        "raw UTF-8 bytes in the path",
        "404|400",
        send("POST", "/v1/models/模型:predict".encode(), instances(1), JSON_HEADERS),
        why="no such model (or not a valid URL)",
    )
    c.rest(
        group,
        "unicode model, status",
        "404",
        send("GET", "/v1/models/%E6%A8%A1%E5%9E%8B", headers=KEY),
        why="no such model",
    )
    c.rest(
        group,
        "emoji label",
        "400|404",
        send("POST", "/v1/models/cnn/labels/%F0%9F%98%80:predict", instances(1), JSON_HEADERS),
        why="no such label",
    )
    c.rest(
        group,
        "unicode model, classify",
        "404",
        lambda b: rawhttp.request(
            b, "POST", "/v1/classify/%E6%A8%A1%E5%9E%8B", orjson.dumps({"image": [0] * 784}), JSON_HEADERS
        ),
        ("gateway",),
        "no such model",
    )
    for name in ("模型✓", "😀", "cnn\u200b", "x" * 10_000):
        c.grpc_case(
            group,
            f"model {name[:12]!r}",
            "NOT_FOUND",
            functools.partial(c.grpc_predict, c.predict_request(name)),
            why="no such model",
        )


def traversal(c: Checker) -> None:
    group = "path traversal"
    for name, path, expected in (
        ("..%2F..%2Fetc%2Fpasswd", "/v1/models/..%2F..%2Fetc%2Fpasswd:predict", "404|400"),
        ("%2e%2e%2fcnn", "/v1/models/%2e%2e%2fcnn:predict", "404|400"),
        ("cnn%2F..%2Fcnn", "/v1/models/cnn%2F..%2Fcnn:predict", "404|400"),
        ("..%5C..%5Cwindows", "/v1/models/..%5C..%5Cwindows:predict", "404"),
        ("literal ../cnn", "/v1/models/../cnn:predict", "400"),
        ("literal ../../etc/passwd", "/v1/models/../../etc/passwd:predict", "400"),
        ("version ..%2F1", "/v1/models/cnn/versions/..%2F1:predict", "400"),
        ("version 1%2F..%2F2", "/v1/models/cnn/versions/1%2F..%2F2:predict", "400"),
        ("version 2^64", "/v1/models/cnn/versions/18446744073709551616:predict", "400"),
        ("label ..%2F..%2Fetc", "/v1/models/cnn/labels/..%2F..%2Fetc:predict", "400|404"),
    ):
        c.rest(
            group,
            name,
            expected,
            send("POST", path, instances(1), JSON_HEADERS),
            why="a name, never a path: 404 unknown, 400 malformed URL",
        )
    c.rest(
        group,
        "metadata of ..%2F..%2Fetc%2Fpasswd",
        "404|400",
        send("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd/metadata", headers=KEY),
        why="no such model",
    )
    c.rest(
        group,
        "classify ..%2Fcnn",
        "400|404",
        send("POST", "/v1/classify/..%2Fcnn", orjson.dumps({"image": [0] * 784}), JSON_HEADERS),
        ("gateway",),
        "not a model name",
    )
    for name in ("../cnn", "../../etc/passwd", "cnn/../cnn", "%2e%2e%2fcnn", "..\\cnn", "/etc/passwd"):
        c.grpc_case(
            group,
            f"model {name!r}",
            "NOT_FOUND",
            functools.partial(c.grpc_predict, c.predict_request(name)),
            why="no such model",
        )
    labelled = c.predict_request()
    labelled.model_spec.version_label = "../1"
    c.grpc_case(
        group,
        "version label '../1'",
        "INVALID_ARGUMENT|NOT_FOUND",
        lambda: c.grpc_predict(labelled),
        why="no such label",
    )
    versioned = c.predict_request()
    versioned.model_spec.version.value = 2**63 - 1
    c.grpc_case(group, "version 2^63-1", "NOT_FOUND", lambda: c.grpc_predict(versioned), why="no such version")


# slow clients --------------------------------------------------------------------------------------


def drip(base: str, connections: int, body: bool, period: float, limit_s: float) -> dict[str, Any]:
    """``connections`` sockets each sending a request a byte every ``period`` s: the body (headers sent
    whole) or the headers themselves. Returns per connection how it ended and after how long."""
    host, port = rawhttp.address(base)
    payload = instances(1)
    if body:
        prefix = rawhttp.head("POST", PREDICT, JSON_HEADERS, len(payload), False)
        pending = payload
    else:
        # padded so that the headers alone take longer than limit_s to drip: the header timeout must be
        # what ends them (short headers would finish in time and leave the body timeout to act)
        padding = {"X-Slow-Padding": "x" * int(limit_s / period + 1)}
        head = rawhttp.head("POST", PREDICT, {**JSON_HEADERS, **padding}, len(payload), False)
        prefix, pending = b"", head + payload
    socks: list[socket.socket] = []
    for _ in range(connections):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(prefix)
        sock.setblocking(False)
        socks.append(sock)
    started = time.monotonic()
    ended: dict[int, tuple[float, bytes]] = {}
    position = 0
    while len(ended) < connections and time.monotonic() - started < limit_s:
        for index, sock in enumerate(socks):
            if index in ended:
                continue
            try:
                data = sock.recv(65536)
                ended[index] = (time.monotonic() - started, data)  # an answer, or b"" when closed
                continue
            except BlockingIOError:
                pass
            except OSError:
                ended[index] = (time.monotonic() - started, b"")
                continue
            if position < len(pending):
                try:
                    sock.send(pending[position : position + 1])
                except OSError:
                    ended[index] = (time.monotonic() - started, b"")
        position += 1
        time.sleep(period)
    statuses: dict[str, int] = {}
    for index, sock in enumerate(socks):
        answer = ended[index][1] if index in ended else None
        if answer is None:
            key = "still open"
        elif answer.startswith(b"HTTP/1.1 "):
            reply = rawhttp.parse(answer + read_rest(sock))
            key = str(reply.status)
            if reply.error_text() is None:
                key += f" (no JSON error: {reply.body[:60]!r})"
        else:
            key = "closed"
        statuses[key] = statuses.get(key, 0) + 1
        sock.close()
    times = [value[0] for value in ended.values()]
    return {"statuses": statuses, "max_s": max(times, default=0.0), "bytes_sent_each": position}


def read_rest(sock: socket.socket) -> bytes:
    """What a server sends after its first packet, until it closes (or 2 s pass)."""
    sock.setblocking(True)
    sock.settimeout(2.0)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def latencies(c: Checker, base: str, count: int, stop: threading.Event | None = None) -> list[float]:
    values: list[float] = []
    with httpx.Client(timeout=30) as client:
        while len(values) < count or (stop is not None and not stop.is_set()):
            started = time.monotonic()
            outputs = c.rest_predict(base, client)
            values.append(time.monotonic() - started)
            if int(outputs["class_id"][0]) != int(c.reference["class_id"][0]):
                raise ValueError("a normal predict answered a different class during the slow clients")
            if stop is None and len(values) >= count:
                break
    return values


def slow_clients(c: Checker, connections: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for target, base, body_s, header_s in (
        ("gateway", c.gateway.rest, c.limits.body_s, c.limits.header_s),
        ("modelserver", c.modelserver.rest, c.limits.ms_timeout_s, c.limits.ms_timeout_s),
    ):
        for body in (True, False):
            timeout = body_s if body else header_s
            kind = "body" if body else "headers"
            before = latencies(c, base, 20)
            stop = threading.Event()
            during: list[float] = []
            errors: list[str] = []

            def measure(
                base: str = base, stop: threading.Event = stop, during: list[float] = during, errors: list[str] = errors
            ) -> None:
                try:
                    during.extend(latencies(c, base, 5, stop))
                except (httpx.HTTPError, ValueError, KeyError) as error:
                    errors.append(repr(error))

            thread = threading.Thread(target=measure, daemon=True)
            thread.start()
            outcome = drip(base, connections, body, period=0.1, limit_s=timeout + 15)
            stop.set()
            thread.join(60)
            expected = "408"
            name = f"{connections} connections sending the {kind} a byte every 0.1 s"
            answered = outcome["statuses"].get(expected, 0)
            ok = answered == connections and outcome["max_s"] <= timeout + 5 and not errors
            p50_before, p50_during = statistics.median(before), statistics.median(during) if during else float("inf")
            # other clients unaffected: every normal predict during the attack correct, median within
            # 3x of before (+20 ms for a busy machine's noise)
            unaffected = bool(during) and p50_during <= 3 * p50_before + 0.020
            got = (
                ", ".join(f"{k}: {v}" for k, v in sorted(outcome["statuses"].items()))
                + f" within {outcome['max_s']:.1f} s"
            )
            c._record(
                Case(
                    "slow clients",
                    name,
                    f"{target}-rest",
                    f"408 x{connections} within {timeout + 5:g} s",
                    got,
                    ok,
                    outcome["max_s"],
                    "; ".join(errors),
                    f"{kind} read timeout {timeout:g} s",
                )
            )
            c.result.expect(
                unaffected,
                f"{target} slow {kind}: normal predict p50 {p50_during * 1000:.1f} ms during "
                f"vs {p50_before * 1000:.1f} ms before",
            )
            figures[f"{target}_slow_{kind}"] = {
                "connections": connections,
                "statuses": outcome["statuses"],
                "timed_out_within_s": round(outcome["max_s"], 2),
                "normal_predicts_during": len(during),
                "p50_before_ms": round(p50_before * 1000, 2),
                "p50_during_ms": round(p50_during * 1000, 2),
                "p95_during_ms": round(float(np.percentile(during, 95)) * 1000, 2) if during else None,
            }
    return figures


# the check -----------------------------------------------------------------------------------------


def run(ctx: Context) -> CheckResult:
    result = CheckResult("hostile", what="hostile REST/gRPC input against the gateway and the model server")
    with timed(result):
        quick = ctx.quick
        limits = Limits(
            max_body=(1 if quick else 16) * 1024 * 1024,
            max_batch=256,
            max_pixels=4096 * 4096,
            max_message=(4 if quick else 64) * 1024 * 1024,
            header_s=2.0 if quick else 10.0,
            body_s=2.0 if quick else 20.0,
            ms_timeout_s=2.0 if quick else 30.0,
        )
        # every servable (the SavedModels) and every CPU runtime (the cnn's TFLite and ONNX variants)
        repo, servables = ctx.runtime_repo("hostile")
        modelserver_args = (
            f"--rest_api_max_body_bytes={limits.max_body}",
            f"--rest_api_timeout_in_ms={int(limits.ms_timeout_s * 1000)}",
        )
        gateway_overrides = {
            "limits": {
                "max_body_bytes": limits.max_body,
                "max_batch_size": limits.max_batch,
                "max_image_pixels": limits.max_pixels,
            },
            "timeouts": {"header_read_s": limits.header_s, "body_read_s": limits.body_s},
            "channel": {"max_message_bytes": limits.max_message},
        }
        cases: list[Case] = []
        health_rounds = 0
        slow: dict[str, Any] = {}
        # oneDNN on (TensorFlow's default on Intel CPUs, where a wrong rank once aborted the model server)
        # for every group; then oneDNN off (AMD's default) for the groups whose requests reach a runtime
        for onednn, groups in (
            ("1", (body_size, json_structure, batch_size, images, nan_inf, dtypes, names, traversal)),
            ("0", (json_structure, batch_size, nan_inf, dtypes)),
        ):
            modelserver = ctx.start_modelserver(
                repo, f"modelserver-onednn{onednn}", modelserver_args, env={"TF_ENABLE_ONEDNN_OPTS": onednn}
            )
            name = f"gateway-onednn{onednn}"
            gateway = ctx.start_gateway(repo, [modelserver.grpc], name, overrides=gateway_overrides)
            checker = Checker(result, gateway, modelserver, limits, label=f"[oneDNN {onednn}] ")
            try:
                for group in groups:
                    group(checker)
                    checker.healthy(group.__name__)
                shapes.run_matrix(checker, servables)
                if onednn == "1":
                    slow = slow_clients(checker, 32 if quick else 200)
                    checker.healthy("slow clients")
            finally:
                checker.close()
            cases += checker.cases
            health_rounds += checker.health_checks
            gateway.managed.stop(grace=5.0)
            modelserver.managed.stop(grace=5.0)
        by_target: dict[str, int] = {}
        for case in cases:
            by_target[case.target] = by_target.get(case.target, 0) + 1
        per_target = ", ".join(f"{k} {v}" for k, v in sorted(by_target.items()))
        result.amount = (
            f"{len(cases)} cases ({per_target}), {health_rounds} health rounds; {len(servables)} servables "
            f"({', '.join(f'{k}: {v}' for k, v in servables.items())}); model server with oneDNN on, then off"
        )
        result.figures = {
            "cases": len(cases),
            "cases_failed": sum(1 for case in cases if not case.ok),
            "health_rounds": health_rounds,
            "servables": servables,
            **{f"{k}_p50_during_ms": v["p50_during_ms"] for k, v in slow.items()},
            **{f"{k}_p50_before_ms": v["p50_before_ms"] for k, v in slow.items()},
            "limits": asdict(limits),
            "slow_clients": slow,
            "per_case": [asdict(case) for case in cases],
        }
        (ctx.out / "hostile-cases.md").write_text(cases_table(cases))
    return result


def cases_table(cases: list[Case]) -> str:
    lines = ["| target | group | case | expected | got | ok | message |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        cells = [
            case.target,
            case.group,
            case.name,
            case.expected,
            case.got,
            "yes" if case.ok else "NO",
            case.message[:100],
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
