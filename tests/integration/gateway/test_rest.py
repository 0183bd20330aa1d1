"""TF Serving's REST API and the friendly API through a real gateway in front of a real gRPC upstream."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from serving.tfserving.encode import error_body
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ROW_BODY = (
    '{\n    "predictions": [\n        {\n            "class_id": 3,\n            "probabilities": '
    "[0.02, 0.02, 0.02, 0.82, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02]\n        }\n    ]\n}"
)


def _repo(root: Path) -> Path:
    """A repository the gateway reads names and labels from (the models themselves live upstream)."""
    config = "model_config_list {\n"
    for name in ("cnn", "lstm", "transformer", "cnn_int8"):
        config += f'  config {{ name: "{name}" base_path: "/models/{name}" model_platform: "tensorflow" }}\n'
    (root / "repo").mkdir()
    (root / "repo" / "models.config").write_text(config + "}\n")
    card = root / "repo" / "cnn" / "1" / "assets.extra"
    card.mkdir(parents=True)
    (card / "model_card.json").write_text(orjson.dumps({"labels": LABELS}).decode())
    assets = root / "repo" / "lstm" / "1" / "assets"
    assets.mkdir(parents=True)
    (assets / "labels.txt").write_text("\n".join(label.upper() for label in LABELS) + "\n")
    return root / "repo"


@pytest.fixture(scope="module")
def upstream(tmp_module: Path) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(tmp_module, "cnn,lstm,transformer,cnn_int8", shift={"lstm": 1})
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(tmp_module: Path, upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "repo": str(_repo(tmp_module)),
        "upstreams": {"default": {"targets": [upstream.target]}},
        "routes": {"canary": {"split": {"cnn": 90, "cnn_int8": 10}}},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"], "voting": "soft", "quorum": 2}},
    }
    gw = Gateway(tmp_module, config)
    gw.wait_ready()
    yield gw
    gw.stop()


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


# TF Serving's REST API ---------------------------------------------------------------------------


def test_predict_row_format_is_tf_servings_body(gateway: Gateway) -> None:
    response = gateway.client.post("/v1/models/cnn:predict", json=image_instances(100.0))
    assert response.status_code == 200
    assert response.text == ROW_BODY
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-servable"] == "cnn"
    assert response.headers["x-model-version"] == "1"


def test_predict_columnar_versions_and_labels(gateway: Gateway) -> None:
    body = {"inputs": {"image": image_instances(30.0, batch=2)["instances"]}}
    response = gateway.client.post("/v1/models/cnn/versions/1:predict", json=body)
    assert response.status_code == 200
    outputs = response.json()["outputs"]
    assert outputs["class_id"] == [1, 1]
    assert len(outputs["probabilities"]) == 2
    labelled = gateway.client.post("/v1/models/cnn/labels/stable:predict", json=image_instances(100.0))
    assert labelled.status_code == 200
    assert labelled.text == ROW_BODY


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        (
            "POST",
            "/v1/models/nope:predict",
            b'{"instances": [1]}',
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/cnn/versions/2:predict",
            orjson.dumps(image_instances(1.0)),
            404,
            "Servable not found for request: Specific(cnn, 2)",
        ),
        (
            "POST",
            "/v1/models/cnn:predict",
            b'{"instances": [',
            400,
            "JSON Parse error: Invalid value. at offset: 15",
        ),
        (
            "POST",
            "/v1/models/cnn:predict",
            b'{"signature_name": ""}',
            400,
            "Missing 'inputs' or 'instances' key",
        ),
        ("POST", "/v1/models/cnn:launch", b"{}", 400, "Malformed request: POST /v1/models/cnn:launch"),
        ("GET", "/v1/models/cnn/versions/x", None, 400, "Malformed request: GET /v1/models/cnn/versions/x"),
        ("POST", "/v1/models/cnn:classify", b"{}", 501, "The gateway answers :predict only, not :classify"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("PUT", "/v1/models/cnn", b"{}", 400, "Malformed request: PUT /v1/models/cnn"),
    ],
)
def test_errors_are_tf_servings(
    gateway: Gateway, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    response = gateway.client.request(method, path, content=body)
    assert response.status_code == status
    assert response.content == error_body(error)
    assert response.headers["x-request-id"]


def test_wrong_shape_comes_back_from_upstream_as_400(gateway: Gateway) -> None:
    response = gateway.client.post("/v1/models/cnn:predict", json={"instances": [[1.0, 2.0]]})
    assert response.status_code == 400
    assert response.json() == {"error": "image must be [batch,28,28,1], got [1, 2]"}


def test_status_and_metadata(gateway: Gateway) -> None:
    status = gateway.client.get("/v1/models/cnn")
    assert status.status_code == 200
    assert status.json() == {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}
    metadata = gateway.client.get("/v1/models/cnn/versions/1/metadata")
    assert metadata.status_code == 200
    document = metadata.json()
    assert document["model_spec"] == {"name": "cnn", "version": "1", "signature_name": ""}
    signature = document["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert sorted(signature["outputs"]) == ["class_id", "probabilities"]


def test_request_id_goes_upstream_as_grpc_metadata(gateway: Gateway, upstream: FakeUpstream) -> None:
    response = gateway.client.post(
        "/v1/models/lstm:predict", json=image_instances(100.0), headers={"X-Request-ID": "req-rest-42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-rest-42"
    assert "Predict lstm req-rest-42" in upstream.call_lines()
    assert '"request_id":"req-rest-42"' in gateway.log()


# Operations ----------------------------------------------------------------------------------


def test_health_ready_metrics_and_model_list(gateway: Gateway) -> None:
    assert gateway.client.get("/healthz").json() == {"status": "alive"}
    assert gateway.client.get("/readyz").json() == {"status": "ready"}
    gateway.client.post("/v1/models/cnn:predict", json=image_instances(100.0))
    assert gateway.metric("tensorgate_gateway_requests_total", method="predict", servable="cnn", status="200") >= 1
    models = {model["name"]: model for model in gateway.client.get("/v1/models").json()["models"]}
    assert sorted(models) == ["canary", "cnn", "cnn_int8", "lstm", "transformer", "vote"]
    ok = {"error_code": "OK", "error_message": ""}
    assert models["cnn"]["versions"] == [{"version": "1", "state": "AVAILABLE", "status": ok}]
    assert models["cnn"]["labels"] == LABELS
    assert models["lstm"]["labels"] == [label.upper() for label in LABELS]
    assert models["transformer"]["labels"] is None
    assert models["canary"]["split"] == {"cnn": 90, "cnn_int8": 10}
    assert models["vote"]["quorum"] == 2
    assert gateway.client.get("/docs").status_code == 200
    paths = gateway.client.get("/openapi.json").json()["paths"]
    forms = ["", "/labels/{label}", "/versions/{version}"]
    tf_serving = [f"/v1/models/{{name}}{form}{end}" for form in forms for end in ("", "/metadata", ":predict")]
    expected = ["/healthz", "/metrics", "/readyz", "/v1/classify/{name}", "/v1/models", "/v1/{path}", *tf_serving]
    v2_models = [
        f"/v2/models/{{name}}{form}{end}" for form in ("", "/versions/{version}") for end in ("", "/ready", "/infer")
    ]
    expected += ["/v2", "/v2/health/live", "/v2/health/ready", *v2_models]
    assert sorted(paths) == sorted(expected)


def test_gateway_process_never_imported_tensorflow(gateway: Gateway) -> None:
    maps = Path(f"/proc/{gateway.pid}/maps").read_text()
    assert "grpc" in maps  # the check sees the gateway's shared libraries ...
    assert "tensorflow" not in maps  # ... and TF's (libtensorflow_framework, _pywrap_tensorflow) are absent


# The friendly API ------------------------------------------------------------------------------


def test_classify_png_upload_uses_the_repository_labels(gateway: Gateway) -> None:
    png = _png(np.full((28, 28), 100, dtype=np.uint8))
    response = gateway.client.post("/v1/classify/cnn", files={"file": ("shoe.png", png, "image/png")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["servable"] == "cnn" and answer["version"] == "1" and answer["degraded"] is False
    prediction = answer["predictions"][0]
    assert prediction["label"] == "three" and prediction["class_id"] == 3
    assert prediction["score"] == pytest.approx(0.82)
    assert prediction["probabilities"]["three"] == pytest.approx(0.82)
    assert answer["conversions"] == [
        {
            "source": "png",
            "width": 28,
            "height": 28,
            "mode": "L",
            "converted": [],
            "prepared": {
                "orientation": 1,
                "alpha_background": None,
                "background": 100,
                "inverted": False,
                "dataset_style": True,
                "box": None,
                "scaled_to": None,
                "padded": None,
            },
        }
    ]


def _mean_class(array: np.ndarray) -> int:
    """The fake upstream's answer: the class is the mean intensity of what the model was sent."""
    return int(np.clip(array.mean(), 0, 255) * 10 // 256)


def test_classify_prepares_photos_and_reports_the_steps(gateway: Gateway) -> None:
    from serving.gateway import images  # the definition the gateway runs (tests/unit/pictures checks its steps)

    photo = np.full((40, 56, 3), 255, dtype=np.uint8)
    photo[5:35, 10:25] = (0, 90, 0)  # a dark green object on white
    jpeg = np.full((60, 60), 240, dtype=np.uint8)
    jpeg[20:50, 30:45] = 100
    pictures = [_png(photo), _png(jpeg, "JPEG")]
    files = [("file", ("a.png", pictures[0], "image/png")), ("file", ("b.jpg", pictures[1], "image/jpeg"))]
    response = gateway.client.post("/v1/classify/cnn?debug=1", files=files)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = [images.from_bytes(picture, 10_000) for picture in pictures]
    assert [p["class_id"] for p in answer["predictions"]] == [_mean_class(array) for array, _ in expected]
    first = answer["conversions"][0]
    assert (first["source"], first["width"], first["height"], first["mode"]) == ("png", 56, 40, "RGB")
    assert first["converted"] == [
        "grayscale from RGB",
        "light background (255) inverted",
        "cropped to the object: 15x30 at (10, 5)",
        "scaled to 14x28",
        "padded to 28x28 (left 7, top 0, right 7, bottom 0)",
    ]
    assert first["prepared"]["box"] == [10, 5, 15, 30] and first["prepared"]["inverted"] is True
    for conversion, (array, _) in zip(answer["conversions"], expected, strict=True):
        seen = Image.open(
            io.BytesIO(base64.b64decode(conversion["model_input"].removeprefix("data:image/png;base64,")))
        )
        np.testing.assert_array_equal(np.asarray(seen), array[..., 0])
    plain = gateway.client.post("/v1/classify/cnn", files=files).json()
    assert all("model_input" not in conversion for conversion in plain["conversions"])


def test_classify_base64_arrays_and_raw_body(gateway: Gateway) -> None:
    bright = np.zeros((28, 28), dtype=np.uint8)
    bright[1:27, 1:27] = 255  # dataset-style (dark border): used as sent, mean 220 -> class 8
    encoded = base64.b64encode(_png(bright)).decode()
    blue = [[[0, 0, 255]] * 10] * 10
    blue[4] = [[255, 255, 255]] * 10  # a light line across a dark blue picture: trimmed to it, all 255 rows
    images = [encoded, "data:image/png;base64," + encoded, [30] * 784, [[60] * 28] * 28, blue]
    response = gateway.client.post("/v1/classify/cnn", json={"images": images})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [p["class_id"] for p in answer["predictions"]] == [8, 8, 1, 2, 1]
    assert answer["conversions"][4]["converted"] == [
        "grayscale from RGB",
        "cropped to the object: 10x1 at (0, 4)",
        "scaled to 28x3",
        "padded to 28x28 (left 0, top 12, right 0, bottom 13)",
    ]
    raw = gateway.client.post(
        "/v1/classify/cnn",
        content=_png(np.full((28, 28), 100, np.uint8)),
        headers={"content-type": "image/png"},
    )
    assert raw.status_code == 200
    assert raw.json()["predictions"][0]["label"] == "three"


def test_classify_ensemble_reports_member_votes(gateway: Gateway) -> None:
    response = gateway.client.post("/v1/classify/vote", json={"image": [[100] * 28] * 28})
    assert response.status_code == 200
    answer = response.json()
    assert answer["servable"] == "vote" and answer["degraded"] is False
    assert answer["predictions"][0]["label"] == "three"
    assert [(m["servable"], m["labels"], m["error"]) for m in answer["members"]] == [
        ("cnn", ["three"], None),
        ("lstm", ["four"], None),
        ("transformer", ["three"], None),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"image": "not base64!"}, "Unable to base64 decode the image"),
        (
            {"image": base64.b64encode(b"hello").decode()},
            "The image could not be decoded: send PNG or JPEG bytes",
        ),
        (
            {"image": [1, 2, 3]},
            "A pixel array must be 784 values or [height][width] (optionally x1, x3 or x4 channels); got shape [3]",
        ),
        ({"image": [[300] * 28] * 28}, "Pixel values must be numbers from 0 to 255"),
        (
            {"image": [[[250, 250, 250]] * 10] * 10},
            "The picture is all one colour (level 250): there is nothing to classify",
        ),
        ({"image": ""}, "The image is empty (0 bytes): send PNG or JPEG bytes"),
        ({"images": []}, "No images to classify"),
        ({"pictures": []}, 'Send {"image": ...} or {"images": [...]} (base64 strings or pixel arrays)'),
    ],
)
def test_classify_errors(gateway: Gateway, body: object, error: str) -> None:
    response = gateway.client.post("/v1/classify/cnn", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": error}


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its few bytes do not hold."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


_NOT_DECODED = "The image could not be decoded: send PNG or JPEG bytes"
_PHOTO = np.full((48, 64, 3), 255, np.uint8)
_PHOTO[10:40, 20:40] = (0, 60, 120)
BAD_PICTURES = {
    "empty": (b"", 400, "The image is empty (0 bytes): send PNG or JPEG bytes"),
    "not an image": (b"hello, world", 400, _NOT_DECODED),
    "truncated png": (_png(_PHOTO)[:60], 400, _NOT_DECODED),
    "truncated jpeg": (_png(_PHOTO, "JPEG")[:-200], 400, _NOT_DECODED),  # cut in the scan
    "one colour": (
        _png(np.full((48, 64, 3), 250, np.uint8)),
        400,
        "The picture is all one colour (level 250): there is nothing to classify",
    ),
    "too large": (_png_declaring(5000, 4000), 413, "Image of 5000x4000 pixels is over the limit of 16777216 pixels"),
}


@pytest.mark.parametrize("name", list(BAD_PICTURES))
def test_bad_pictures_are_4xx_in_base64_and_multipart(gateway: Gateway, name: str) -> None:
    picture, status, error = BAD_PICTURES[name]
    as_base64 = gateway.client.post("/v1/classify/cnn", json={"image": base64.b64encode(picture).decode()})
    as_file = gateway.client.post("/v1/classify/cnn?debug=1", files={"file": ("bad.png", picture, "image/png")})
    for answer in (as_base64, as_file):
        assert answer.status_code == status, answer.text
        assert answer.json() == {"error": error}
    assert gateway.client.post("/v1/classify/cnn", json={"image": [100] * 784}).status_code == 200  # still serving
