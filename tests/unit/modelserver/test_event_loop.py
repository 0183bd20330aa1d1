"""The model server's event loop choice (TENSORGATE_MODELSERVER_EVENT_LOOP)."""

from __future__ import annotations

import sys

import pytest

from serving.modelserver.__main__ import event_loop


def test_auto_and_uvloop_pick_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    assert event_loop("auto") == "uvloop"
    assert event_loop("uvloop") == "uvloop"
    assert event_loop("asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert event_loop("auto") == "asyncio"
    with pytest.raises(ValueError, match=r"uvloop is not installed \(pip install uvloop\)"):
        event_loop("uvloop")


def test_unknown_choice_names_the_variable_and_the_choices() -> None:
    message = "TENSORGATE_MODELSERVER_EVENT_LOOP must be auto, uvloop or asyncio, got 'Trio'"
    with pytest.raises(ValueError, match=message):
        event_loop("Trio")
