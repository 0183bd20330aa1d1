"""The gateway in front of the real model server (python -m serving.modelserver) with quick-trained models.

REST answers must be the model server's own, byte for byte: the gateway adds nothing a TF Serving REST
client could notice. The model server is killed and restarted once to check recovery on real processes.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest

from serving import protos
from serving.tensors import from_numpy, to_numpy
from tests.integration.gateway.conftest import Gateway, Proc, free_port

pytestmark = pytest.mark.slow

MODELS = ("cnn", "lstm", "transformer", "ensemble")


class ModelServer(Proc):
    def __init__(self, tmp: Path, repo: Path, extra_flags: tuple[str, ...] = ()) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        config = tmp / "models.config"
        entries = "".join(
            f'  config {{ name: "{name}" base_path: "{repo / name}" model_platform: "tensorflow" }}\n'
            for name in MODELS
        )
        config.write_text("model_config_list {\n" + entries + "}\n")
        args = [
            sys.executable,
            "-m",
            "serving.modelserver",
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            f"--model_config_file={config}",
            *extra_flags,
        ]
        # oneDNN on, as TensorFlow sets it by default on Intel CPUs: the path where a wrong-rank input once
        # aborted the model server (tested on AMD machines too, where TensorFlow leaves it off)
        env = {"CUDA_VISIBLE_DEVICES": "", "TF_ENABLE_ONEDNN_OPTS": "1"}
        super().__init__(args, tmp / f"modelserver-{self.rest_port}.out", env)
        self.rest = f"http://127.0.0.1:{self.rest_port}"
        self.wait()

    def wait(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"model server exited:\n{self.log()[-3000:]}")
            with socket.socket() as sock:
                listening = sock.connect_ex(("127.0.0.1", self.rest_port)) == 0
            if listening and all(httpx.get(f"{self.rest}/v1/models/{m}").status_code == 200 for m in MODELS):
                return
            time.sleep(0.2)
        raise TimeoutError(self.log()[-3000:])

    def restart(self) -> None:
        self.start()
        self.wait()


@pytest.fixture(scope="module")
def servers(tmp_module: Path, quick_repo: Path) -> Iterator[tuple[ModelServer, Gateway]]:
    model_server = ModelServer(tmp_module, quick_repo)
    config = {
        "repo": str(quick_repo),
        "upstreams": {"default": {"targets": [f"127.0.0.1:{model_server.grpc_port}"]}},
        "servables": {name: "default" for name in MODELS},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"], "voting": "soft"}},
        "timeouts": {"probe_s": 0.2, "status_poll_s": 0.3, "request_s": 5.0},
    }
    gateway = Gateway(tmp_module, config)
    try:
        gateway.wait_ready(60)
        yield model_server, gateway
    finally:
        gateway.stop()
        model_server.stop()


def _images(count: int, seed: int = 0) -> list[Any]:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28, 1)).astype(float).tolist()


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/cnn:predict", {"instances": _images(3)}, 200),
        ("/v1/models/ensemble/versions/1:predict", {"inputs": {"image": _images(2, seed=1)}}, 200),
        ("/v1/models/lstm:predict", {"signature_name": "serving_default", "instances": _images(1, seed=2)}, 200),
        ("/v1/models/nope:predict", {"instances": _images(1)}, 404),
        ("/v1/models/cnn/versions/9:predict", {"instances": _images(1)}, 404),
        ("/v1/models/cnn:predict", {"instances": [[1.0, 2.0]]}, 400),
        ("/v1/models/cnn:predict", {"signature_name": "nope", "instances": _images(1)}, 400),
        ("/v1/models/cnn:predict", {"instances": []}, 400),
    ],
)
def test_rest_predict_answers_are_the_model_servers_byte_for_byte(
    servers: tuple[ModelServer, Gateway], path: str, body: dict[str, Any], status: int
) -> None:
    model_server, gateway = servers
    content = orjson.dumps(body)
    direct = httpx.post(model_server.rest + path, content=content, timeout=30)
    through = gateway.client.post(path, content=content)
    assert direct.status_code == status, direct.text
    assert (through.status_code, through.content) == (direct.status_code, direct.content)


def test_wrong_rank_request_is_400_and_the_next_good_one_200_direct_and_through_the_gateway(
    servers: tuple[ModelServer, Gateway],
) -> None:
    """The request that once killed the model server (oneDNN's fatal CHECK on a 2-D input to a conv)."""
    model_server, gateway = servers
    error = {"error": "Input image has shape [1,2] but the signature expects [-1,28,28,1]"}
    good = orjson.dumps({"instances": _images(1)})
    for base in (model_server.rest, gateway.url):
        for _ in range(2):
            bad = httpx.post(f"{base}/v1/models/cnn:predict", content=b'{"instances": [[1.0, 2.0]]}', timeout=30)
            assert (bad.status_code, bad.json()) == (400, error)
            assert httpx.post(f"{base}/v1/models/cnn:predict", content=good, timeout=30).status_code == 200
    request = protos.PredictRequest()
    request.model_spec.name = "cnn"
    from_numpy(np.asarray([[1.0, 2.0]], np.float32), out=request.inputs["image"])
    for port in (model_server.grpc_port, gateway.grpc_port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as caught:
            protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30)
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, error["error"])
    assert model_server.process is not None and model_server.process.poll() is None


@pytest.mark.parametrize(
    "path", ["/v1/models/cnn", "/v1/models/ensemble/versions/1", "/v1/models/nope", "/v1/models/cnn/versions/7"]
)
def test_rest_status_answers_match(servers: tuple[ModelServer, Gateway], path: str) -> None:
    model_server, gateway = servers
    direct = httpx.get(model_server.rest + path, timeout=30)
    through = gateway.client.get(path)
    assert (through.status_code, through.content) == (direct.status_code, direct.content)


def test_rest_metadata_matches(servers: tuple[ModelServer, Gateway]) -> None:
    model_server, gateway = servers
    direct = httpx.get(model_server.rest + "/v1/models/cnn/metadata", timeout=30)
    through = gateway.client.get("/v1/models/cnn/metadata")
    assert through.status_code == direct.status_code == 200
    assert through.json() == direct.json()  # signature maps may print in another order


def test_grpc_front_matches_the_model_server(servers: tuple[ModelServer, Gateway]) -> None:
    model_server, gateway = servers
    request = protos.PredictRequest()
    request.model_spec.name = "transformer"
    from_numpy(np.asarray(_images(4, seed=3), np.float32), out=request.inputs["image"])
    answers = []
    for port in (model_server.grpc_port, gateway.grpc_port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answers.append(protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30))
    direct, through = answers
    assert sorted(through.outputs) == sorted(direct.outputs) == ["class_id", "probabilities"]
    for name in direct.outputs:
        np.testing.assert_array_equal(to_numpy(through.outputs[name]), to_numpy(direct.outputs[name]))
    assert through.model_spec == direct.model_spec


def test_labels_come_from_the_model_card(servers: tuple[ModelServer, Gateway], quick_repo: Path) -> None:
    _, gateway = servers
    labels = orjson.loads((quick_repo / "cnn" / "1" / "assets.extra" / "model_card.json").read_bytes())["labels"]
    models = {m["name"]: m for m in gateway.client.get("/v1/models").json()["models"]}
    assert models["cnn"]["labels"] == labels
    answer = gateway.client.post("/v1/classify/cnn", json={"images": _images(2)}).json()
    for prediction in answer["predictions"]:
        assert prediction["label"] == labels[prediction["class_id"]]
        assert list(prediction["probabilities"]) == labels
    assert answer["servable"] == "cnn" and answer["version"] == "1"


def test_gateway_ensemble_answers_as_the_ensemble_savedmodel(servers: tuple[ModelServer, Gateway]) -> None:
    """The fan-out `vote` reads the temperatures and weights from the ensemble's model card."""
    model_server, gateway = servers
    images = _images(6, seed=4)
    savedmodel = httpx.post(f"{model_server.rest}/v1/models/ensemble:predict", json={"inputs": images}).json()
    outputs = gateway.client.post("/v1/models/vote:predict", json={"inputs": images}).json()["outputs"]
    expected = savedmodel["outputs"]
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-4, atol=1e-5)
    assert outputs["class_id"] == expected["class_id"]
    members = np.asarray(expected["member_probabilities"])
    assert not np.allclose(outputs["probabilities"], members.mean(axis=1), atol=1e-3)  # not the plain mean


def test_gateway_stays_free_of_tensorflow_beside_the_model_server(servers: tuple[ModelServer, Gateway]) -> None:
    model_server, gateway = servers
    assert "tensorflow" in Path(f"/proc/{model_server.pid}/maps").read_text()  # the check can see TF
    assert "tensorflow" not in Path(f"/proc/{gateway.pid}/maps").read_text()


def test_killed_model_server_gives_fast_503_then_recovery(servers: tuple[ModelServer, Gateway]) -> None:
    model_server, gateway = servers
    body = {"instances": _images(1)}
    assert gateway.client.post("/v1/models/cnn:predict", json=body).status_code == 200
    model_server.stop(signal.SIGKILL)
    started = time.monotonic()
    failed = gateway.client.post("/v1/models/cnn:predict", json=body)
    assert time.monotonic() - started < 5.0  # inside the request deadline
    assert failed.status_code == 503
    assert str(model_server.grpc_port) not in failed.text
    model_server.restart()
    deadline = time.monotonic() + 30
    while gateway.client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.client.get("/readyz").status_code == 200
    assert gateway.client.post("/v1/models/cnn:predict", json=body).status_code == 200
