"""Weighted splits (sticky by key), shadow traffic with its agreement metric, ensembles with quorum."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.tfserving.encode import error_body
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow

BODY = image_instances(100.0)


@pytest.fixture(scope="module")
def upstreams(tmp_module: Path) -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    main = FakeUpstream(
        tmp_module, "cnn,cnn_int8,cnn_bad,transformer,sleepy", shift={"cnn_bad": 1}, delay={"sleepy": 3.0}
    )
    lstm = FakeUpstream(tmp_module, "lstm")
    yield main, lstm
    main.stop()
    lstm.stop()


@pytest.fixture(scope="module")
def gateway(tmp_module: Path, upstreams: tuple[FakeUpstream, FakeUpstream]) -> Iterator[Gateway]:
    main, lstm = upstreams
    config = {
        "repo": None,
        "upstreams": {"default": {"targets": [main.target]}, "side": {"targets": [lstm.target]}},
        "servables": {
            "cnn": "default",
            "cnn_int8": "default",
            "cnn_bad": "default",
            "sleepy": "default",
            "transformer": "default",
            "lstm": "side",
        },
        "routes": {
            "split": {"split": {"cnn": 90, "cnn_int8": 10}},
            "agreeing": {"split": {"cnn": 1}, "shadow": "cnn_int8"},
            "disagreeing": {"split": {"cnn": 1}, "shadow": "cnn_bad"},
        },
        "ensembles": {
            "trio": {"members": ["cnn", "lstm", "transformer"], "voting": "soft", "quorum": 2},
            "pair": {"members": ["cnn", "lstm"], "voting": "weighted", "weights": [2, 1], "quorum": 2},
            "patient": {
                "members": ["cnn", "transformer", "sleepy"],
                "voting": "hard",
                "quorum": 2,
                "member_timeout_s": 0.3,
            },
        },
        "timeouts": {"probe_s": 0.2, "status_poll_s": 0.2},
    }
    gw = Gateway(tmp_module, config)
    gw.wait_ready()
    yield gw
    gw.stop()


def test_split_lands_within_tolerance(gateway: Gateway) -> None:
    answered = Counter(
        gateway.client.post("/v1/models/split:predict", json=BODY).headers["x-servable"] for _ in range(600)
    )
    assert set(answered) == {"cnn", "cnn_int8"}
    # 10% of 600: standard deviation 7.3, so +-29 is four of them (a false failure 1 in 15,000 runs).
    assert 31 <= answered["cnn_int8"] <= 89, answered
    assert gateway.metric("tensorgate_gateway_route_choices_total", route="split") == 600


def test_sticky_keys_stay_put(gateway: Gateway) -> None:
    first = {}
    for key in range(100):
        headers = {"x-request-key": f"user-{key}"}
        first[key] = gateway.client.post("/v1/models/split:predict", json=BODY, headers=headers).headers["x-servable"]
    assert 2 <= sum(servable == "cnn_int8" for servable in first.values()) <= 25
    for key in range(100):
        headers = {"x-request-key": f"user-{key}"}
        again = gateway.client.post("/v1/models/split:predict", json=BODY, headers=headers).headers["x-servable"]
        assert again == first[key]


def _wait_metric(gateway: Gateway, name: str, at_least: float, **labels: str) -> float:
    deadline = time.monotonic() + 10
    while (value := gateway.metric(name, **labels)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_shadow_keeps_the_answer_and_measures_agreement(gateway: Gateway) -> None:
    direct = gateway.client.post("/v1/models/cnn:predict", json=BODY).text
    for route in ("agreeing", "disagreeing"):
        for _ in range(20):
            response = gateway.client.post(f"/v1/models/{route}:predict", json=BODY)
            assert response.status_code == 200
            assert response.text == direct  # the caller gets the primary's answer
            assert response.headers["x-servable"] == "cnn"
    rows = "tensorgate_gateway_shadow_rows_total"
    agreements = "tensorgate_gateway_shadow_agreements_total"
    assert _wait_metric(gateway, rows, 20, route="agreeing", candidate="cnn_int8") == 20
    assert gateway.metric(agreements, route="agreeing", candidate="cnn_int8") == 20
    assert _wait_metric(gateway, rows, 20, route="disagreeing", candidate="cnn_bad") == 20
    assert gateway.metric(agreements, route="disagreeing", candidate="cnn_bad") == 0


def test_ensemble_quorum_degraded_and_lost(gateway: Gateway, upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    _, lstm = upstreams
    whole = gateway.client.post("/v1/models/trio:predict", json=BODY)
    assert whole.status_code == 200
    assert "x-degraded" not in whole.headers
    weighted = gateway.client.post("/v1/models/pair:predict", json=BODY)
    assert weighted.status_code == 200
    assert weighted.json()["predictions"][0]["class_id"] == 3

    lstm.stop(signal.SIGKILL)
    try:
        degraded = gateway.client.post("/v1/models/trio:predict", json=BODY)
        assert degraded.status_code == 200
        assert degraded.headers["x-degraded"] == "true"
        assert degraded.json()["predictions"][0]["member_class_ids"] == [3, -1, 3]
        friendly = gateway.client.post("/v1/classify/trio", json={"image": [[100] * 28] * 28}).json()
        assert friendly["degraded"] is True
        assert [m["error"] is None for m in friendly["members"]] == [True, False, True]
        assert gateway.metric("tensorgate_gateway_ensemble_answers_total", ensemble="trio", degraded="true") == 2

        lost = gateway.client.post("/v1/models/pair:predict", json=BODY)
        assert lost.status_code == 503
        assert lost.content == error_body("Ensemble 'pair': 1 of 2 members answered; quorum is 2")
    finally:
        lstm.restart()


def test_a_member_past_its_deadline_does_not_hold_up_the_answer(gateway: Gateway) -> None:
    started = time.monotonic()
    response = gateway.client.post("/v1/classify/patient", json={"image": [[100] * 28] * 28})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    answer = response.json()
    assert answer["degraded"] is True
    assert [(m["servable"], m["error"]) for m in answer["members"]] == [
        ("cnn", None),
        ("transformer", None),
        ("sleepy", "Deadline exceeded"),
    ]
    assert answer["predictions"][0]["class_id"] == 3
    assert elapsed < 2.5  # the sleepy member takes 3 s; its 0.3 s deadline ends the wait
    assert gateway.metric("tensorgate_gateway_ensemble_member_failures_total", ensemble="patient", member="sleepy") == 1
