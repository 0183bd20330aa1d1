"""serving.supervisor: a child that dies is logged with how it ended and its last words, then restarted
after a pause that doubles while it keeps dying."""

from __future__ import annotations

import io
import logging
import sys
import time

import pytest

from serving.supervisor import Supervised, exit_reason

DIES = [sys.executable, "-c", "import os; print('about to fail: Check failed: index >= 0', flush=True); os.abort()"]


def test_exit_reason_names_signals_and_statuses() -> None:
    assert exit_reason(-6) == "killed by signal SIGABRT (6)"
    assert exit_reason(-9) == "killed by signal SIGKILL (9)"
    assert exit_reason(3) == "exited with status 3"


def wait_dead(child: Supervised) -> None:
    assert child.process is not None
    child.process.wait(30)


def test_a_dying_child_is_logged_and_restarted_with_growing_pauses(caplog: pytest.LogCaptureFixture) -> None:
    output = io.StringIO()
    child = Supervised("model server", DIES, backoff_s=0.2, max_backoff_s=0.4, output=output)
    caplog.set_level(logging.INFO, "tensorgate.supervisor")
    child.start()
    try:
        pauses = []
        for restart in (1, 2, 3):
            wait_dead(child)
            noticed = time.monotonic()
            assert child.check() is False
            while child.restarts < restart:
                child.check()
                time.sleep(0.01)
            pauses.append(time.monotonic() - noticed)
        wait_dead(child)
        child.check()
    finally:
        child.stop()
    died = [r.getMessage() for r in caplog.records if "killed by signal" in r.getMessage()]
    assert len(died) == 4
    # 0.2 s, doubled to 0.4 s, then held at the 0.4 s cap; each restart waited at least that long
    announced = [float(m.split("restarting it in ")[1].split(" s.")[0]) for m in died]
    assert announced == [0.2, 0.4, 0.4, 0.4]
    assert all(pause >= wanted - 0.01 for pause, wanted in zip(pauses, announced, strict=False))
    assert "the model server (pid " in died[0] and "killed by signal SIGABRT (6)" in died[0]
    assert "Its last output: about to fail: Check failed: index >= 0" in died[0]
    assert output.getvalue().count("about to fail") == 4  # the child's output passes through


def test_stop_ends_a_running_child_and_cancels_a_pending_restart() -> None:
    child = Supervised("gateway", [sys.executable, "-c", "import time; time.sleep(60)"], output=io.StringIO())
    child.start()
    assert child.check() is True
    child.stop(grace_s=5)
    assert child.process is not None and child.process.returncode is not None
    assert child.check() is False
    time.sleep(0.6)
    assert child.check() is False and child.restarts == 0
