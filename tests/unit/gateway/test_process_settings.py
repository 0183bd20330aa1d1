"""The gateway's process settings: which event loop and HTTP parser a choice resolves to, with fallbacks;
gRPC core experiments handed over before grpc loads."""

from __future__ import annotations

import builtins
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.gateway.__main__ import event_loop, grpc_experiments, http_parser
from serving.gateway.config import ConfigError, load_settings
from serving.http_timeouts import timed_http_protocol

ROOT = Path(__file__).resolve().parents[3]


def _without(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module:
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_installed_choices_resolve_to_themselves() -> None:
    assert [http_parser(choice) for choice in ("auto", "httptools", "h11")] == ["httptools", "httptools", "h11"]
    assert [event_loop(choice) for choice in ("auto", "uvloop", "asyncio")] == ["uvloop", "uvloop", "asyncio"]


def test_auto_falls_back_and_an_explicit_choice_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "httptools")
    assert http_parser("auto") == "h11"
    with pytest.raises(ConfigError, match=r"server\.http_parser: httptools is not installed"):
        http_parser("httptools")
    _without(monkeypatch, "uvloop")
    assert event_loop("auto") == "asyncio"
    with pytest.raises(ConfigError, match=r"server\.event_loop: uvloop is not installed"):
        event_loop("uvloop")


@pytest.mark.parametrize(("parser", "base"), [("httptools", HttpToolsProtocol), ("h11", H11Protocol)])
def test_either_parser_gets_the_header_timer(parser: str, base: type) -> None:
    protocol = timed_http_protocol(2.5, "h11" if parser == "h11" else "httptools")
    assert issubclass(protocol, base) and getattr(protocol, "header_timeout_s", None) == 2.5
    # our JSON 400, not uvicorn's plain text
    assert getattr(protocol, "send_400_response") is not getattr(base, "send_400_response")  # noqa: B009


def test_grpc_experiments_reach_the_environment_before_grpc_loads() -> None:
    script = (
        "import os, sys\n"
        "from serving.gateway.__main__ import grpc_experiments\n"
        "assert 'grpc' not in sys.modules\n"
        "grpc_experiments('-event_engine_listener')\n"
        "print(os.environ['GRPC_EXPERIMENTS'])\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "GRPC_EXPERIMENTS"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-event_engine_listener"


def test_grpc_experiments_leave_an_explicit_variable_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_EXPERIMENTS", "")  # the operator asked for gRPC's own defaults
    grpc_experiments("-event_engine_listener")
    assert os.environ["GRPC_EXPERIMENTS"] == ""


def test_grpc_experiments_say_so_when_grpc_is_already_loaded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    assert "grpc" in sys.modules  # this test process imported it (serving.http_timeouts)
    with caplog.at_level(logging.WARNING, logger="tensorgate.gateway"):
        grpc_experiments("-event_engine_listener")
    assert "GRPC_EXPERIMENTS" not in os.environ
    assert "server.grpc_experiments ignored" in caplog.text


def test_grpc_experiments_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"server\.grpc_experiments"):
        load_settings(repo=None, server={"grpc_experiments": "event engine; rm"})
    assert load_settings(repo=None, server={"grpc_experiments": ""}).server.grpc_experiments == ""
