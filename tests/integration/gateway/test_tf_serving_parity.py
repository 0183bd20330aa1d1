"""The gateway's /v1/models listing and its limits, in front of the real model server serving TF
Serving's own test models (one of them broken)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import text_format

from serving import protos
from serving.tensors import from_numpy
from tests.integration.gateway.conftest import Gateway
from tests.integration.modelserver.conftest import RunningServer, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_module: Path, tfs_testdata: Path) -> Iterator[tuple[RunningServer, Gateway]]:
    config = protos.ModelServerConfig()
    for name, folder in (("half_plus_two", "saved_model_half_plus_two_cpu"), ("bad", "bad_half_plus_two")):
        config.model_config_list.config.add(
            name=name, base_path=str(tfs_testdata / folder), model_platform="tensorflow"
        ).version_labels["stable"] = 123
    path = tmp_module / "models.config"
    path.write_text(text_format.MessageToString(config))
    model_server = start_server([f"--model_config_file={path}"], tmp_module)
    gateway = Gateway(
        tmp_module,
        {
            "upstreams": {"default": {"targets": [model_server.grpc_target]}},
            "servables": {"half_plus_two": "default", "bad": "default"},
            "timeouts": {"probe_s": 0.2, "status_poll_s": 0.3, "request_s": 5.0},
        },
    )
    yield model_server, gateway
    gateway.stop()
    model_server.stop()


def listing(gateway: Gateway) -> dict[str, dict]:
    return {model["name"]: model for model in gateway.client.get("/v1/models").json()["models"]}


def test_failed_version_shows_its_error_as_tf_servings_status_url_does(servers) -> None:
    """TF Serving's GET /v1/models/bad (get_model_status_impl.cc) carries the failed version's status;
    the gateway's listing now carries the same status object for every version."""
    model_server, gateway = servers
    status_url = httpx.get(f"{model_server.rest}/v1/models/bad", timeout=10).json()["model_version_status"][0]
    assert status_url["state"] == "END" and status_url["status"]["error_code"] == "NOT_FOUND"
    for _ in range(100):
        versions = listing(gateway)["bad"]["versions"]
        if versions:
            break
        time.sleep(0.1)
    assert versions == [{"version": "123", "state": "END", "status": status_url["status"]}]
    assert listing(gateway)["half_plus_two"]["versions"] == [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]


def test_version_labels_are_length_capped_like_names(servers) -> None:
    _, gateway = servers
    long_label = "l" * 5000
    answer = gateway.client.post(f"/v1/models/half_plus_two/labels/{long_label}:predict", json={"instances": [1.0]})
    assert answer.status_code == 400
    message = "Unrecognized servable version label: a label of 5000 characters (the limit is 1024)"
    assert answer.json() == {"error": message}
    assert gateway.client.post("/v1/models/half_plus_two/labels/stable:predict", json={"instances": [1.0]}).json() == {
        "predictions": [2.5]
    }
    request = protos.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.version_label = long_label
    request.inputs["x"].CopyFrom(from_numpy(np.array([[1.0]], np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel, pytest.raises(grpc.RpcError) as caught:
        protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=10)
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("POST", "/v1/models/a%2Fb:predict", 404, "Servable not found for request: Latest(a/b)"),
        ("GET", "/v1/models/a%2Fb", 404, "Could not find any versions of model a/b"),
        ("GET", "/v1/models/a%2Fb/metadata", 404, "Servable not found for request: Latest(a/b)"),
        (
            "POST",
            "/v1/models/half_plus_two/labels/st%2Fable:predict",
            400,
            "Unrecognized servable version label: st/able",
        ),
        ("POST", "/v1/models/a/b:predict", 400, "Malformed request: POST /v1/models/a/b:predict"),
        ("POST", "/v1/models/half%5Fplus%5Ftwo:predict", 200, None),
    ],
)
def test_encoded_names_are_decoded_after_matching_as_tf_serving_does(
    servers, method: str, path: str, status: int, error: str | None
) -> None:
    """http_rest_api_util.cc ParseModelInfo: the URL regex runs on the path as sent ([^/:]+ takes
    "a%2Fb"), then DecodeArg (curl_easy_unescape) decodes the model name and the label. So an
    encoded slash names model "a/b" (404 from the manager, 400 for a label), an unencoded one does not
    match (400 Malformed request), and an encoded name of a served model is that model. The model
    server and the gateway answer alike."""
    model_server, gateway = servers
    body = b'{"instances": [1.0]}' if method == "POST" else None
    for base in (model_server.rest, gateway.url):
        answer = httpx.request(method, f"{base}{path}", content=body, timeout=10)
        assert answer.status_code == status, (base, answer.text)
        if error is None:
            assert answer.json() == {"predictions": [2.5]}
        else:
            assert answer.json() == {"error": error}
