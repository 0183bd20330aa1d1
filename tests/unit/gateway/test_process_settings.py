"""The gateway's process settings: which event loop and HTTP parser a choice resolves to, with fallbacks."""

from __future__ import annotations

import builtins
from typing import Any

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.gateway.__main__ import event_loop, http_parser
from serving.gateway.config import ConfigError
from serving.http_timeouts import timed_http_protocol


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
