"""The events helper and the faults check's judgement: they must be able to fail."""

from __future__ import annotations

from pathlib import Path

import orjson

from loadtest.reliability import faults
from loadtest.reliability.common import CheckResult, Context, Server
from loadtest.reliability.load import BackgroundLoad, Event, read_events, status_counts, wrong_answers

REFERENCE = [3, 1, 4]


def ok(t: float, name: str = "instances cnn x1", payload: int = 0, classes: tuple[int, ...] = (3,)) -> Event:
    status = "OK" if name.startswith("grpc") else "200"
    return Event(t=t, name=name, ms=5.0, ok=True, payload=payload, status=status, classes=classes, version="1")


def failed(t: float, name: str = "instances cnn x1", status: str = "503", ms: float = 5.0) -> Event:
    return Event(t=t, name=name, ms=ms, ok=False, status=status, error=f"{status}: no upstream")


def test_read_events_sorts_and_skips_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [
        {"t": 2.0, "name": "grpc cnn x1", "ms": 1.5, "ok": True, "payload": 1, "version": "1", "classes": [1]},
        {"t": 1.0, "name": "instances cnn x1", "ms": 2.0, "ok": False, "status": 503, "error": "HTTP 503"},
    ]
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows) + b'{"t": 3.0, "na')
    events = read_events(path)
    assert [e.t for e in events] == [1.0, 2.0]
    assert events[0].status == "503" and not events[0].ok and events[0].protocol == "rest"
    assert events[1].classes == (1,) and events[1].protocol == "grpc" and events[1].start == 2.0 - 0.0015
    assert status_counts(events) == {"503": 1, "ok": 1}


def test_wrong_answers_flags_wrong_empty_and_unknown_version() -> None:
    right = ok(1.0, payload=2, classes=(4,))
    wrong_class = ok(1.1, payload=2, classes=(5,))
    empty = ok(1.2, payload=1, classes=())
    unknown = Event(t=1.3, name="grpc cnn x1", ms=1.0, ok=True, payload=0, classes=(3,), version="7")
    assert wrong_answers([right, wrong_class, empty, unknown, failed(1.4)], {"1": REFERENCE}) == [
        wrong_class,
        empty,
        unknown,
    ]


def outage(killed: float = 10.0) -> list[Event]:
    events = [ok(killed - 1), ok(killed - 0.5, "grpc cnn x1")]
    events += [failed(killed + 0.1), failed(killed + 0.1, "grpc cnn x1", "UNAVAILABLE")]
    events += [ok(killed + 5, payload=1, classes=(1,)), ok(killed + 5, "grpc cnn x1", payload=2, classes=(4,))]
    return events


def test_judge_single_passes_a_well_behaved_outage() -> None:
    result = CheckResult("faults")
    faults.judge_single(result, outage(), REFERENCE, killed=10.0, restarted=13.0, ready=14.0)
    assert result.failures == []
    assert result.figures["a_kill_to_503_rest_s"] == 0.1
    assert result.figures["a_wrong_or_empty_200"] == 0


def test_judge_single_fails_on_a_hang_a_wrong_answer_a_slow_503_and_late_failures() -> None:
    events = outage()
    events[2] = failed(12.5, ms=11_000.0)  # first REST failure 2.5 s after the kill, after hanging 11 s
    events.append(ok(15.0, payload=0, classes=(9,)))  # a 200 with the wrong class
    events.append(failed(20.0, "grpc cnn x1", "INTERNAL"))  # not UNAVAILABLE, and 6 s after ready
    result = CheckResult("faults")
    faults.judge_single(result, sorted(events, key=lambda e: e.t), REFERENCE, killed=10.0, restarted=13.0, ready=14.0)
    text = "\n".join(result.failures)
    assert "first rest 503 came 2.50 s after the kill" in text
    assert "11000 ms during the outage" in text
    assert "a 200 with a wrong or empty answer" in text
    assert "a failure other than UNAVAILABLE" in text
    assert "failures went on 6.0 s after the model server was ready again" in text


def test_background_load_reads_appended_events_and_waits_for_whole_lines(tmp_path: Path) -> None:
    context = Context(tmp_path / "repo", tmp_path / "out", quick=True)
    load = BackgroundLoad(context, Server(None, "http://127.0.0.1:1", "127.0.0.1:2"), "unit")  # type: ignore[arg-type]
    first = orjson.dumps({"t": 2.0, "name": "grpc cnn x1", "ms": 1.0, "ok": True}) + b"\n"
    second = orjson.dumps({"t": 1.0, "name": "instances cnn x1", "ms": 1.0, "ok": True}) + b"\n"
    load.path.write_bytes(first + second[:10])
    assert [e.t for e in load.events()] == [2.0]
    with load.path.open("ab") as stream:
        stream.write(second[10:])
    assert [e.t for e in load.events()] == [1.0, 2.0]
    assert [e.t for e in load.events(since=1.5)] == [2.0]
