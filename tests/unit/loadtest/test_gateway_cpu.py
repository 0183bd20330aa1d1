"""loadtest.gateway_cpu: the gateway config (the benchmark's settings plus --server / --workers overrides) and
how the figures of several gateway processes combine."""

from __future__ import annotations

import argparse

import pytest

from loadtest import gateway_cpu
from serving.gateway.config import Settings


def test_server_settings_reach_the_gateway_config_and_validate() -> None:
    settings = [gateway_cpu._server_setting(text) for text in ("event_loop=asyncio", "gc_freeze=false")]
    assert settings == [("event_loop", "asyncio"), ("gc_freeze", False)]
    config = gateway_cpu.gateway_config(8000, 8001, "127.0.0.1:8500", 2, dict(settings))
    assert config["server"] == {"event_loop": "asyncio", "gc_freeze": False, "workers": 2}
    parsed = Settings.model_validate({**config, "repo": None})
    assert parsed.server.event_loop == "asyncio" and parsed.server.gc_freeze is False and parsed.server.workers == 2


def test_no_overrides_leave_the_server_section_out() -> None:
    assert "server" not in gateway_cpu.gateway_config(8000, 8001, "127.0.0.1:8500", 1)


@pytest.mark.parametrize("text", ["event_loop", "=asyncio"])
def test_a_setting_without_key_and_value_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        gateway_cpu._server_setting(text)


def test_processes_combine_as_the_median_of_each_ones_figure_and_keep_every_round() -> None:
    def run(protocol: str, us: float, rounds: list[float]) -> dict[str, object]:
        return {
            "protocol": protocol,
            "connections": 32,
            "us_per_request": us,
            "us_per_request_rounds": rounds,
            "requests_per_s": 1e6 / us,
            "requests": 100,
            "rounds": len(rounds),
        }

    per_process = [
        [run("rest", 300.0, [290.0, 300.0, 310.0]), run("grpc", 600.0, [600.0])],
        [run("rest", 450.0, [450.0, 440.0, 460.0]), run("grpc", 500.0, [500.0])],
        [run("rest", 320.0, [320.0, 330.0, 300.0]), run("grpc", 700.0, [700.0])],
    ]
    rest, grpc = gateway_cpu.combine(per_process)
    assert (rest["protocol"], rest["us_per_request"], rest["us_per_request_processes"]) == (
        "rest",
        320.0,
        [300, 450, 320],
    )
    assert rest["rounds"] == 9 and len(rest["us_per_request_rounds"]) == 9
    assert grpc["us_per_request"] == 600.0 and grpc["requests_per_s"] == 1e6 / 600.0


def test_a_single_process_reports_its_own_figures() -> None:
    only = {"protocol": "rest", "connections": 1, "us_per_request": 700.0, "us_per_request_rounds": [700.0]}
    (combined,) = gateway_cpu.combine([[{**only, "requests_per_s": 900.0, "requests": 10, "rounds": 1}]])
    assert combined["us_per_request"] == 700.0 and combined["us_per_request_processes"] == [700.0]
