"""Concurrent requests for one servable share an upstream call while another is in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_module: Path) -> Iterator[tuple[FakeUpstream, Gateway]]:
    upstream = FakeUpstream(tmp_module, "slow,small", delay={"slow": 1.0, "small": 1.0}, max_batch={"small": 2})
    config = {
        "repo": None,
        "servables": {"slow": "default", "small": "default"},
        "upstreams": {"default": {"targets": [upstream.target]}},
    }
    gateway = Gateway(tmp_module, config)
    gateway.wait_ready()
    yield upstream, gateway
    gateway.stop()
    upstream.stop()


def _concurrent(gateway: Gateway, servable: str) -> dict[int, tuple[int, list[int], str]]:
    """req-0 alone, then req-1..5 (1 or 2 rows each) while req-0 is in flight upstream."""
    answers: dict[int, tuple[int, list[int], str]] = {}
    bodies = {index: orjson.dumps(image_instances(30.0 * index, batch=1 + index % 2)) for index in range(6)}
    client = httpx.Client(base_url=gateway.url, timeout=30)

    def call(index: int) -> None:
        headers = {"x-request-id": f"req-{index}"}
        response = client.post(f"/v1/models/{servable}:predict", content=bodies[index], headers=headers)
        classes = [row["class_id"] for row in response.json()["predictions"]]
        answers[index] = (response.status_code, classes, response.headers["x-request-id"])

    leader = threading.Thread(target=call, args=(0,))
    leader.start()
    time.sleep(0.3)  # the leader is in flight upstream for 1 s
    followers = [threading.Thread(target=call, args=(index,)) for index in range(1, 6)]
    for thread in followers:
        thread.start()
    for thread in [leader, *followers]:
        thread.join()

    client.close()
    return answers


def test_requests_waiting_behind_one_in_flight_go_up_as_one_batch(servers: tuple[FakeUpstream, Gateway]) -> None:
    upstream, gateway = servers
    answers = _concurrent(gateway, "slow")
    # Each caller gets its own rows (classes differ per caller) and its own request id.
    assert answers == {i: (200, [i] * (1 + i % 2), f"req-{i}") for i in range(6)}
    calls = [line.split() for line in upstream.call_lines() if line.startswith("Predict slow")]
    assert calls[0] == ["Predict", "slow", "req-0"]
    followers_by_call = [call[2].split(",") for call in calls[1:]]
    assert sorted(i for ids in followers_by_call for i in ids) == [f"req-{i}" for i in range(1, 6)]
    # Five followers that all waited behind the leader need at most two calls (normally one).
    assert len(followers_by_call) <= 2 and max(map(len, followers_by_call)) >= 3


def test_a_batch_the_upstream_refuses_is_asked_again_one_by_one(servers: tuple[FakeUpstream, Gateway]) -> None:
    upstream, gateway = servers
    answers = _concurrent(gateway, "small")  # "small" refuses more than 2 rows with INVALID_ARGUMENT
    assert answers == {i: (200, [i] * (1 + i % 2), f"req-{i}") for i in range(6)}
    ids = [line.split()[2] for line in upstream.call_lines() if line.startswith("Predict small")]
    merged = [call for call in ids if "," in call]
    assert merged  # the merged call was tried, refused, then every caller went alone:
    assert sorted(call for call in ids if "," not in call) == [f"req-{i}" for i in range(6)]
