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
    upstream = FakeUpstream(tmp_module, "slow", delay={"slow": 1.0})
    config = {"repo": None, "servables": {"slow": "default"}, "upstreams": {"default": {"targets": [upstream.target]}}}
    gateway = Gateway(tmp_module, config)
    gateway.wait_ready()
    yield upstream, gateway
    gateway.stop()
    upstream.stop()


def test_requests_waiting_behind_one_in_flight_go_up_as_one_batch(servers: tuple[FakeUpstream, Gateway]) -> None:
    upstream, gateway = servers
    answers: dict[int, tuple[int, list[int], str]] = {}
    bodies = {index: orjson.dumps(image_instances(30.0 * index, batch=1 + index % 2)) for index in range(6)}
    client = httpx.Client(base_url=gateway.url, timeout=30)

    def call(index: int) -> None:
        headers = {"x-request-id": f"req-{index}"}
        response = client.post("/v1/models/slow:predict", content=bodies[index], headers=headers)
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
    # Each caller gets its own rows (classes differ per caller) and its own request id.
    assert answers == {i: (200, [i] * (1 + i % 2), f"req-{i}") for i in range(6)}
    calls = [line.split() for line in upstream.call_lines() if line.startswith("Predict")]
    assert calls[0] == ["Predict", "slow", "req-0"]
    followers_by_call = [call[2].split(",") for call in calls[1:]]
    assert sorted(i for ids in followers_by_call for i in ids) == [f"req-{i}" for i in range(1, 6)]
    # Five followers that all waited behind the leader need at most two calls (normally one).
    assert len(followers_by_call) <= 2 and max(map(len, followers_by_call)) >= 3
