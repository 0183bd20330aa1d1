"""Regressions from the reliability fuzz and auth checks (issue 8): what /openapi.json declares, a
version over int64, and every gRPC method behind the key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from serving import protos
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow

KEY = "test-key"


@pytest.fixture(scope="module")
def gateway(tmp_module: Path) -> Iterator[Gateway]:
    upstream = FakeUpstream(tmp_module, "cnn")
    repo = tmp_module / "repo"
    repo.mkdir()
    (repo / "models.config").write_text(
        'model_config_list {\n  config { name: "cnn" base_path: "/m/cnn" model_platform: "tensorflow" }\n}\n'
    )
    gw = Gateway(
        tmp_module, {"repo": str(repo), "upstreams": {"default": {"targets": [upstream.target]}}, "api_keys": [KEY]}
    )
    gw.client.headers["x-api-key"] = KEY
    gw.wait_ready()
    yield gw
    gw.stop()
    upstream.stop()


def test_a_version_over_int64_is_tf_servings_400_not_a_500(gateway: Gateway) -> None:
    big = "99999999999999999999999"
    for method, url in (("POST", f"/v1/models/cnn/versions/{big}:predict"), ("GET", f"/v1/models/cnn/versions/{big}")):
        response = gateway.client.request(method, url, json=image_instances(1.0))
        assert response.status_code == 400
        assert response.json() == {"error": f"Failed to convert version: {big} to numeric."}


def test_openapi_declares_the_real_answers_and_the_key(gateway: Gateway) -> None:
    schema = gateway.client.get("/openapi.json").json()
    paths = schema["paths"]
    predict = paths["/v1/models/{name}:predict"]["post"]
    assert {"200", "400", "401", "404", "413", "503", "504"} <= set(predict["responses"])
    assert predict["responses"]["400"]["content"]["application/json"]["schema"]["required"] == ["error"]
    assert predict["security"] == [{"apiKey": []}, {"bearer": []}]
    assert schema["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    for path in ("/v1/models/{name}/versions/{version}:predict", "/v1/models/{name}/labels/{label}/metadata"):
        assert path in paths
    assert all("422" not in op["responses"] for ops in paths.values() for op in ops.values())
    assert "security" not in paths["/healthz"]["get"] and "security" not in paths["/readyz"]["get"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def test_options_under_v1_is_tf_servings_malformed_request(gateway: Gateway) -> None:
    response = gateway.client.options("/v1/models/cnn")
    assert response.status_code == 400
    assert response.json() == {"error": "Malformed request: OPTIONS /v1/models/cnn"}


def test_every_grpc_method_needs_the_key_even_the_unimplemented(gateway: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        for service in (protos.PREDICTION_SERVICE, protos.MODEL_SERVICE):
            for method in service.methods:
                call = channel.unary_unary(
                    f"/{service.name}/{method.name}",
                    request_serializer=method.request.SerializeToString,
                    response_deserializer=method.response.FromString,
                )
                with pytest.raises(grpc.RpcError) as refused:
                    call(method.request(), timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, method.name
                if method.name in ("Classify", "Regress", "MultiInference", "HandleReloadConfigRequest"):
                    with pytest.raises(grpc.RpcError) as unimplemented:
                        call(method.request(), metadata=(("x-api-key", KEY),), timeout=10)
                    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
