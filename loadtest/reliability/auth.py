"""Auth: with API keys configured, every REST route and gRPC method refuses a missing or wrong key.

REST routes come from the gateway's own ``/openapi.json`` (path parameters filled with real names, a
real body for POSTs), plus the methods the schema leaves out under ``/v1/`` (PUT, DELETE, PATCH,
OPTIONS: TF Serving's Malformed request, after the key). gRPC methods come from server reflection
(every service the gateway registers) and each TF Serving method from ``serving.protos``. Without a
key, with a wrong key, and with a wrong Bearer token: REST must answer 401 with ``{"error": "..."}``,
gRPC UNAUTHENTICATED. With the valid key the same calls must not be 401 / UNAUTHENTICATED, so the
check can tell a refusal from a broken route. The public endpoints answer 200 without a key:
``/healthz``, ``/readyz``, gRPC health, and by decision ``/metrics``, ``/openapi.json``, ``/docs``,
``/redoc`` and gRPC reflection (see docs/reliability.md).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from loadtest.reliability.common import API_KEY, SERVABLE, CheckResult, Context, timed
from serving import protos

PUBLIC_REST = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/v2/health/live",
    "/v2/health/ready",
)
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
PUBLIC_GRPC = (HEALTH, REFLECTION)
PUBLIC_METHODS = ("inference.GRPCInferenceService/ServerLive", "inference.GRPCInferenceService/ServerReady")
FILL = {"name": SERVABLE, "version": "1", "label": "stable", "path": f"models/{SERVABLE}"}
WRONG = {"none": {}, "wrong key": {"x-api-key": "not-the-key"}, "wrong bearer": {"authorization": "Bearer nope"}}
IMAGE = np.zeros((28, 28)).tolist()


def _body(path: str) -> dict[str, Any] | None:
    if path.startswith("/v1/classify/"):
        return {"image": IMAGE}
    if path.endswith(":predict"):
        return {"instances": [np.zeros((28, 28, 1)).tolist()]}
    if path.endswith("/infer"):  # the Open Inference Protocol's JSON tensors
        return {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": [0.0] * 784}]}
    return None


def _rest_routes(url: str) -> list[tuple[str, str]]:
    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    routes = []
    for template, operations in schema["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], template)
        routes += [(method.upper(), path) for method in operations]
    routes += [(method, f"/v1/models/{SERVABLE}") for method in ("PUT", "DELETE", "PATCH", "OPTIONS")]
    return routes


def _check_rest(url: str, result: CheckResult, answers: Counter[str]) -> int:
    client = httpx.Client(base_url=url, timeout=30)
    checked = 0
    for method, path in _rest_routes(url):
        public = path in PUBLIC_REST
        body = _body(path)
        for label, headers in WRONG.items():
            response = client.request(method, path, json=body, headers=headers)
            answers[f"REST {label}: {response.status_code}"] += 1
            if public:
                result.expect(response.status_code == 200, f"{method} {path} ({label}): {response.status_code}")
                continue
            error = response.json().get("error") if "json" in response.headers.get("content-type", "") else None
            result.expect(
                response.status_code == 401 and isinstance(error, str),
                f"{method} {path} ({label}): {response.status_code} {response.text[:120]!r}, expected 401 {{error}}",
            )
        valid = client.request(method, path, json=body, headers={"x-api-key": API_KEY})
        answers[f"REST valid key: {valid.status_code}"] += 1
        result.expect(valid.status_code != 401, f"{method} {path} with the valid key: 401")
        checked += 1
    for path in PUBLIC_REST:  # the public ones the schema does not list (docs, the schema itself)
        response = client.get(path)
        answers[f"REST public: {response.status_code}"] += 1
        result.expect(response.status_code == 200, f"GET {path} without a key: {response.status_code}")
    client.close()
    return checked


def _reflected_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answer = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    return [service.name for service in answer.list_services_response.service]


def _request(method: Any) -> Any:
    message = method.request()
    fields = message.DESCRIPTOR.fields_by_name
    if "model_spec" in fields:
        message.model_spec.name = SERVABLE
    for name in ("model_name", "name"):  # the v2 protocol's messages
        if name in fields and fields[name].type == fields[name].TYPE_STRING:
            setattr(message, name, SERVABLE)
    return message


def _check_grpc(target: str, result: CheckResult, answers: Counter[str]) -> int:
    channel = grpc.insecure_channel(target)
    services = {
        service.name: service for service in (protos.PREDICTION_SERVICE, protos.MODEL_SERVICE, protos.INFERENCE_SERVICE)
    }
    reflected = _reflected_services(channel)
    unknown = [name for name in reflected if name not in services and name not in PUBLIC_GRPC]
    result.expect(not unknown, f"gRPC services served but not checked: {unknown}")
    result.expect(set(services) <= set(reflected), f"TF Serving services missing from reflection: {reflected}")
    checked = 0
    for service in services.values():
        for method in service.methods:
            call = channel.unary_unary(
                f"/{service.name}/{method.name}",
                request_serializer=method.request.SerializeToString,
                response_deserializer=method.response.FromString,
            )
            public = f"{service.name}/{method.name}" in PUBLIC_METHODS
            for label, headers in WRONG.items():
                code = _code(call, _request(method), headers)
                answers[f"gRPC {label}: {code.name}"] += 1
                expected = grpc.StatusCode.OK if public else grpc.StatusCode.UNAUTHENTICATED
                result.expect(
                    code == expected,
                    f"{service.name}/{method.name} ({label}): {code.name}, expected {expected.name}",
                )
            code = _code(call, _request(method), {"x-api-key": API_KEY})
            answers[f"gRPC valid key: {code.name}"] += 1
            result.expect(code != grpc.StatusCode.UNAUTHENTICATED, f"{service.name}/{method.name} valid key: {code}")
            checked += 1
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
    answers["gRPC health without key: OK"] += 1
    result.expect(status == health_pb2.HealthCheckResponse.SERVING, f"gRPC health without a key: {status}")
    channel.close()
    return checked + 1


def _code(call: Any, request: Any, headers: dict[str, str]) -> grpc.StatusCode:
    try:
        call(request, metadata=tuple(headers.items()), timeout=30)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def run(ctx: Context) -> CheckResult:
    result = CheckResult("auth", what="every REST route and gRPC method without a key, a wrong key, the valid key")
    with timed(result):
        repo = ctx.model_repo("auth")
        modelserver = ctx.start_modelserver(repo)
        gateway = ctx.start_gateway(repo, [modelserver.grpc])
        answers: Counter[str] = Counter()
        routes = _check_rest(gateway.rest, result, answers)
        methods = _check_grpc(gateway.grpc, result, answers)
        result.amount = f"{routes} REST routes, {methods} gRPC methods, {sum(answers.values())} calls"
        result.figures = {"rest_routes": routes, "grpc_methods": methods, "answers": dict(sorted(answers.items()))}
    return result
