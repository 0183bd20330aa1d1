"""Photos through TF Serving's REST API on the model server: ``{"b64": ...}`` to ``serving_bytes``
answers as the gateway's preparation does, and bad pictures are 400s with the graph's message."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from loadtest import photosets
from serving.pictures import decode, orientation, prepare, spec
from tests.integration.modelserver.conftest import RunningServer
from training.data import load_dataset, subset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(launch, quick_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    config = tmp_path_factory.mktemp("photo-config") / "models.config"
    entry = f'config {{ name: "cnn" base_path: "{quick_repo / "cnn"}" model_platform: "tensorflow" }}'
    config.write_text(f"model_config_list {{\n  {entry}\n}}\n")
    return launch([f"--model_config_file={config}"])


def _b64(picture: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(picture).decode()}


def test_photos_get_the_gateway_preparations_answer(server: RunningServer) -> None:
    data = load_dataset()
    images, _ = subset(data.x_test, data.y_test, 30, seed=3)
    pictures = photosets.build("everything", images, seed=3)
    arrays = []
    for picture in pictures:
        planes = decode(picture, spec.MAX_PIXELS)
        arrays.append(prepare(planes.y, planes.alpha, orientation(picture))[0])
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        direct = client.post("/v1/models/cnn:predict", json={"instances": np.stack(arrays).tolist()})
        body = {"signature_name": "serving_bytes", "instances": [_b64(picture) for picture in pictures]}
        photos = client.post("/v1/models/cnn:predict", json=body)
    assert direct.status_code == photos.status_code == 200, photos.text
    assert [p["class_id"] for p in photos.json()["predictions"]] == [
        p["class_id"] for p in direct.json()["predictions"]
    ]


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its few bytes do not hold."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_bad_pictures_are_400_with_the_reason(server: RunningServer) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 255, 255)).save(buffer, format="PNG")
    photo = io.BytesIO()
    Image.fromarray(np.pad(np.zeros((30, 20, 3), np.uint8), ((9, 9), (20, 20), (0, 0)), constant_values=255)).save(
        photo, format="PNG"
    )
    truncated = photo.getvalue()[:60]
    cases = {
        buffer.getvalue(): "the picture is all one colour",
        b"": "the image is empty",
        b"GIF": "could not be decoded",
        truncated: "Invalid PNG data",
        _png_declaring(5000, 4000): f"over {spec.MAX_PIXELS} pixels",
    }
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        for picture, reason in cases.items():
            body = {"signature_name": "serving_bytes", "instances": [_b64(picture)]}
            answer = client.post("/v1/models/cnn:predict", json=body)
            assert answer.status_code == 400, answer.text
            assert reason in answer.json()["error"]
        assert client.get("/v1/models/cnn").status_code == 200  # still serving
