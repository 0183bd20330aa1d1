"""loadtest.gateway_cpu's gateway config: the benchmark's settings plus --server / --workers overrides."""

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
