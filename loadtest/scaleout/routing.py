"""Two gateway replicas must route alike: the same request key gets the same servable from either one.

For each of ``keys`` request keys, one REST predict (``x-request-key`` header; the servable comes back
in ``X-Servable``) and one gRPC Predict (``x-request-key`` metadata; ``x-servable`` trailing metadata)
go to the canary route through every gateway. Every key must get one servable from all of them, and
the share of keys on each servable must match the route's weights (within a binomial margin).
"""

from __future__ import annotations

import math
from typing import Any

import grpc
import httpx

from loadtest import payloads
from loadtest.reliability.common import API_KEY, CheckResult, Server
from serving import protos

ROUTE_NAME = "canary"
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def check(gateways: dict[str, Server], keys: int, weights: dict[str, float], result: CheckResult) -> dict[str, Any]:
    rest_body = payloads.build("instances", ROUTE_NAME, 1, 1)[0]
    grpc_body = payloads.build("grpc", ROUTE_NAME, 1, 1)[0].body
    chosen: dict[str, dict[str, str]] = {}  # key -> "gateway/protocol" -> servable
    failures: list[str] = []
    for name, gateway in gateways.items():
        with httpx.Client(base_url=gateway.rest, timeout=30) as client, grpc.insecure_channel(gateway.grpc) as channel:
            call = channel.unary_unary(
                PREDICT, request_serializer=None, response_deserializer=protos.PredictResponse.FromString
            )
            for index in range(keys):
                key = f"user-{index}"
                headers = {"Content-Type": rest_body.content_type, "x-api-key": API_KEY, "x-request-key": key}
                answer = client.post(
                    payloads.path_for("instances", ROUTE_NAME), content=rest_body.body, headers=headers
                )
                if answer.status_code != 200:
                    failures.append(f"{name} REST {key}: HTTP {answer.status_code} {answer.text[:120]}")
                else:
                    chosen.setdefault(key, {})[f"{name}/rest"] = answer.headers.get("x-servable", "")
                try:
                    _, rpc = call.with_call(
                        grpc_body, timeout=30, metadata=(("x-api-key", API_KEY), ("x-request-key", key))
                    )
                except grpc.RpcError as error:
                    failures.append(f"{name} gRPC {key}: {error.code().name} {error.details()}")
                    continue
                trailing = dict(rpc.trailing_metadata() or ())
                chosen.setdefault(key, {})[f"{name}/grpc"] = str(trailing.get("x-servable", ""))
    for failure in failures[:3]:
        result.fail(f"routing: {failure}")
    split = [key for key, answers in chosen.items() if len(set(answers.values())) != 1]
    for key in split[:3]:
        result.fail(f"routing: key {key!r} got different servables: {chosen[key]}")
    counts: dict[str, int] = {}
    for answers in chosen.values():
        servable = next(iter(answers.values()))
        counts[servable] = counts.get(servable, 0) + 1
    total_weight = sum(weights.values())
    shares = {servable: counts.get(servable, 0) / max(1, len(chosen)) for servable in weights}
    for servable, weight in weights.items():
        expected = weight / total_weight
        margin = 4 * math.sqrt(expected * (1 - expected) / max(1, len(chosen)))  # 4 sigma: a real skew, not chance
        result.expect(
            abs(shares[servable] - expected) <= margin,
            f"routing: {shares[servable]:.1%} of keys went to {servable} (weight {expected:.1%} +- {margin:.1%})",
        )
    unknown = sorted(set(counts) - set(weights))
    result.expect(not unknown, f"routing: answers named servables outside the route: {unknown}")
    return {
        "keys": keys,
        "answers_per_key": len(gateways) * 2,
        "keys_with_one_servable": len(chosen) - len(split),
        "keys_split": len(split),
        "failed_calls": len(failures),
        "share_of_keys": {servable: round(share, 4) for servable, share in shares.items()},
        "weights": {servable: round(weight / total_weight, 4) for servable, weight in weights.items()},
    }
