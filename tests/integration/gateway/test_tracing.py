"""Tracing across the hop: the real gateway and model server export OpenTelemetry spans to an OTLP
receiver this test runs (loadtest.otlp_receiver, built on the published OTLP protos); one trace id
must cover both processes for REST and gRPC, with the spans the issue names.

The gateway fronts two upstreams: ``default`` (the model server) and ``flaky`` (a closed port, then the
same model server, never ejected), so calls to lstm sometimes need a second attempt.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from loadtest.otlp_receiver import Receiver, Span
from serving import protos
from serving.tensors import from_numpy
from tests.integration.gateway.conftest import Gateway, free_port, image_instances
from tests.integration.gateway.test_modelserver import MODELS, ModelServer

pytestmark = pytest.mark.slow

GATEWAY = "tensorgate-gateway"
MODELSERVER = "tensorgate-modelserver"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def servers(tmp_module: Path, quick_repo: Path, receiver: Receiver) -> Iterator[tuple[ModelServer, Gateway]]:
    (tmp_module / "batching.txt").write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\n")
    flags = (
        "--enable_batching",
        f"--batching_parameters_file={tmp_module / 'batching.txt'}",
        f"--tracing_otlp_endpoint={receiver.endpoint}",
        "--tracing_sample_ratio=1",
    )
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # export every 0.2 s (both processes inherit it)
    try:
        model_server = ModelServer(tmp_module, quick_repo, flags)
    finally:
        os.environ.pop("OTEL_BSP_SCHEDULE_DELAY")
    live = f"127.0.0.1:{model_server.grpc_port}"
    config = {
        "repo": str(quick_repo),
        "upstreams": {"default": {"targets": [live]}, "flaky": {"targets": [f"127.0.0.1:{free_port()}", live]}},
        "servables": {**{name: "default" for name in MODELS}, "lstm": "flaky"},
        "routes": {"canary": {"split": {"cnn": 1}, "shadow": "transformer"}},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"]}},
        "retry": {"attempts": 3, "backoff_initial_s": 0.001},
        "ejection": {"consecutive_failures": 1000000},
        "timeouts": {"status_poll_s": 0.3},
        "tracing": {"otlp_endpoint": receiver.endpoint, "sample_ratio": 1.0},
    }
    gateway = Gateway(tmp_module, config, env={"OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        gateway.wait_ready(60)
        yield model_server, gateway
    finally:
        gateway.stop()
        model_server.stop()


def _traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-{'01' if sampled else '00'}"


def _trace(receiver: Receiver, trace_id: str, *names: str, served: int = 1, timeout: float = 10.0) -> list[Span]:
    """The trace's spans once every name in ``names`` has arrived, and ``served`` model server calls
    (spans are exported in batches, by two processes)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = [span for span in receiver.spans() if span.trace_id == trace_id]
        missing = [name for name in names if not any(span.name.startswith(name) for span in spans)]
        calls = len([s for s in spans if s.name == "predict" and s.service == MODELSERVER])
        if calls < served:
            missing.append(f"{served - calls} model server predict spans")
        if not missing:
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"spans missing from trace {trace_id}: {missing}; got {[s.name for s in spans]}")
        time.sleep(0.1)


def _one(spans: list[Span], name: str, service: str | None = None) -> Span:
    found = [s for s in spans if s.name == name and (service is None or s.service == service)]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return [span for span in spans if span.parent_id == parent.span_id]


def test_rest_predict_is_one_trace_across_both_servers(
    servers: tuple[ModelServer, Gateway], receiver: Receiver
) -> None:
    _, gateway = servers
    trace_id, parent_id, header = _traceparent()
    answer = gateway.client.post("/v1/models/cnn:predict", json=image_instances(0.5), headers={"traceparent": header})
    assert answer.status_code == 200
    timing = answer.headers["server-timing"]
    assert timing.startswith("total;dur=") and f'trace;desc="{trace_id}"' in timing
    spans = _trace(receiver, trace_id, "POST /v1/models/cnn:predict", "decode json", "upstream Predict", "predict")
    assert {span.service for span in spans} == {GATEWAY, MODELSERVER}
    root = _one(spans, "POST /v1/models/cnn:predict", GATEWAY)
    assert root.parent_id == parent_id  # the caller's span
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["tensorgate.servable"] == "cnn"
    upstream = _one(spans, "upstream Predict", GATEWAY)
    assert [name for name, _ in upstream.events] == ["attempt"]
    served = _one(spans, "predict", MODELSERVER)
    assert served.parent_id == upstream.span_id  # joined through the gRPC metadata's traceparent
    queue, batch = _one(spans, "batch queue", MODELSERVER), _one(spans, "batch", MODELSERVER)
    assert queue.parent_id == served.span_id and batch.parent_id == served.span_id
    assert _one(_children(spans, batch), "runtime").service == MODELSERVER
    assert _one(spans, "decode json").parent_id == root.span_id


def test_grpc_predict_is_one_trace_across_both_servers(
    servers: tuple[ModelServer, Gateway], receiver: Receiver
) -> None:
    _, gateway = servers
    trace_id, parent_id, header = _traceparent()
    request = protos.PredictRequest()
    request.model_spec.name = "cnn"
    from_numpy(np.zeros((1, 28, 28, 1), np.float32), out=request.inputs["image"])
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        stub = protos.PREDICTION_SERVICE.stub(channel)
        stub.Predict(request, timeout=10, metadata=(("traceparent", header),))
    spans = _trace(receiver, trace_id, "/tensorflow.serving.PredictionService/Predict", "upstream Predict", "predict")
    root = _one(spans, "/tensorflow.serving.PredictionService/Predict", GATEWAY)
    assert root.parent_id == parent_id
    assert root.attributes["rpc.grpc.status_code"] == "OK"
    served = _one(spans, "predict", MODELSERVER)
    assert served.parent_id == _one(spans, "upstream Predict").span_id


def test_model_server_rest_requests_are_traced(servers: tuple[ModelServer, Gateway], receiver: Receiver) -> None:
    model_server, _ = servers
    trace_id, parent_id, header = _traceparent()
    answer = httpx.post(
        f"{model_server.rest}/v1/models/cnn:predict",
        json=image_instances(0.4),
        headers={"traceparent": header},
        timeout=30,
    )
    assert answer.status_code == 200
    spans = _trace(receiver, trace_id, "POST /v1/models/cnn:predict", "batch", served=0)
    root = _one(spans, "POST /v1/models/cnn:predict", MODELSERVER)
    assert root.parent_id == parent_id and root.attributes["http.response.status_code"] == 200
    assert {span.service for span in spans} == {MODELSERVER}


def test_ensemble_members_and_retries_have_their_spans(
    servers: tuple[ModelServer, Gateway], receiver: Receiver
) -> None:
    _, gateway = servers
    retried = None
    for _ in range(4):  # round-robin over [closed port, model server]: some lstm calls try twice
        trace_id, _, header = _traceparent()
        answer = gateway.client.post("/v1/classify/vote", json={"image": [0] * 784}, headers={"traceparent": header})
        assert answer.status_code == 200
        members = ("ensemble member cnn", "ensemble member lstm", "ensemble member transformer")
        spans = _trace(receiver, trace_id, *members, served=3)
        assert len([s for s in spans if s.name == "predict" and s.service == MODELSERVER]) == 3
        member = _one(spans, "ensemble member lstm")
        upstream = _one(_children(spans, member), "upstream Predict")
        attempts = [attributes for name, attributes in upstream.events if name == "attempt"]
        if len(attempts) == 2:
            retried = attempts
            break
    assert retried is not None, "no lstm call was retried"
    assert [a["attempt"] for a in retried] == [1, 2]
    assert [a["code"] for a in retried] == ["UNAVAILABLE", "OK"]
    assert retried[0]["server.address"] != retried[1]["server.address"]


def test_shadow_calls_join_the_request_trace(servers: tuple[ModelServer, Gateway], receiver: Receiver) -> None:
    _, gateway = servers
    trace_id, _, header = _traceparent()
    answer = gateway.client.post(
        "/v1/models/canary:predict", json=image_instances(0.1), headers={"traceparent": header}
    )
    assert answer.status_code == 200
    spans = _trace(receiver, trace_id, "shadow transformer", served=2)
    shadow = _one(spans, "shadow transformer")
    assert shadow.attributes["tensorgate.route"] == "canary"
    served = [s for s in spans if s.name == "predict" and s.service == MODELSERVER]
    assert len(served) == 2  # the primary's call and the shadow's


def test_an_unsampled_caller_is_not_traced(servers: tuple[ModelServer, Gateway], receiver: Receiver) -> None:
    _, gateway = servers
    trace_id, _, header = _traceparent(sampled=False)
    answer = gateway.client.post("/v1/models/cnn:predict", json=image_instances(0.2), headers={"traceparent": header})
    assert answer.status_code == 200
    assert "trace;" not in answer.headers["server-timing"]
    time.sleep(1.5)  # two export periods
    assert [span.name for span in receiver.spans() if span.trace_id == trace_id] == []


def test_tracing_is_off_by_default(tmp_module: Path, servers: tuple[ModelServer, Gateway]) -> None:
    model_server, _ = servers
    config = {"repo": None, "upstreams": {"default": {"targets": [f"127.0.0.1:{model_server.grpc_port}"]}}}
    gateway = Gateway(tmp_module, {**config, "servables": {"cnn": "default"}})
    try:
        gateway.wait_ready(30)
        _, _, header = _traceparent()
        answer = gateway.client.post(
            "/v1/models/cnn:predict", json=image_instances(0.3), headers={"traceparent": header}
        )
        assert answer.status_code == 200
        assert answer.headers["server-timing"].startswith("total;dur=")
        assert "trace;" not in answer.headers["server-timing"]
    finally:
        gateway.stop()
