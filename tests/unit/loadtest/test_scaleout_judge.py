"""The scale-out run's judgement fails on what it must: uneven shares, calls to a member that left, a
failed request while draining, a wrong answer, a late failure after a kill; and the DNS stand-in."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.rcode
import pytest

from loadtest.reliability.common import CheckResult
from loadtest.reliability.load import Event
from loadtest.scaleout.dnsserver import DnsServer
from loadtest.scaleout.scenario import QUICK, Phase, Run, judge_events

LIVE = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


class _Load:
    def __init__(self, events: list[Event]) -> None:
        self._events = events

    def events(self) -> list[Event]:
        return self._events


def _run(loads: dict[str, Any] | None = None) -> Run:
    run = Run(ctx=None, sizes=QUICK, result=CheckResult("scaleout"), fleet=None)  # type: ignore[arg-type]
    run.loads = loads or {}
    return run


def _phase(server: list[float], gateway: dict[str, float]) -> Phase:
    return Phase("steady", 0.0, 1.0, LIVE, dict(zip(LIVE, server, strict=True)), {"gateway-a": gateway})


def test_even_shares_pass() -> None:
    run = _run()
    run.judge_shares(_phase([100, 98, 102], {"127.0.0.2": 50, "127.0.0.3": 49, "127.0.0.4": 51}))
    assert run.result.failures == []


def test_uneven_shares_and_stray_calls_fail() -> None:
    run = _run()
    run.judge_shares(_phase([200, 50, 50], {"127.0.0.2": 50, "127.0.0.3": 49, "127.0.0.9": 51}))
    assert run.result.failures == [
        "steady: 127.0.0.2 answered 66.7% of the calls (even: 33.3%)",
        "steady: 127.0.0.3 answered 16.7% of the calls (even: 33.3%)",
        "steady: 127.0.0.4 answered 16.7% of the calls (even: 33.3%)",
        "steady: gateway-a sent calls to ['127.0.0.9'], which are not live",
        "steady: gateway-a sent 0.0% of its calls to 127.0.0.4 (even: 33.3%)",
    ]


def _event(t: float, ok: bool = True, classes: tuple[int, ...] = (7,), status: str = "200") -> Event:
    return Event(t=t, name="instances cnn x1", ms=5.0, ok=ok, payload=0, status=status, classes=classes, version="1")


def _judged(events: list[Event]) -> list[str]:
    run = _run({"gateway-a": _Load(events)})
    run.events = {"steady": 0.0, "add": 10.0, "drain": 20.0, "kill": 30.0, "routing": 40.0, "end": 50.0}
    details: dict[str, Any] = {"kill_to_ejection_s": {"gateway-a": 1.0}}
    judge_events(run, [7], details)
    return run.result.failures


def test_clean_events_pass() -> None:
    assert _judged([_event(t) for t in range(1, 50, 2)]) == []


def test_a_failure_while_draining_a_wrong_answer_and_a_late_kill_failure_fail() -> None:
    events = [_event(5), _event(22, ok=False, classes=(), status="503"), _event(25, classes=(3,))]
    events += [_event(30.2, ok=False, classes=(), status="503"), _event(35, ok=False, classes=(), status="503")]
    failures = _judged(events)
    assert len(failures) == 3, failures
    assert failures[0].startswith("gateway-a: a 200 with a wrong or empty answer: instances cnn x1")
    assert (
        failures[1].startswith("drain: gateway-a: a request failed: instances cnn x1") and "status=503" in failures[1]
    )
    # the failure 0.2 s after the kill (before the ejection at 1 s) is reported, not failed
    assert failures[2].startswith("kill: gateway-a: a request failed after the ejection:")


def test_the_dns_stand_in_answers_like_a_headless_service() -> None:
    with DnsServer() as server:
        server.set("models.test", ["127.0.0.2", "127.0.0.3"])
        reply = dns.message.from_wire(server.answer(dns.message.make_query("models.test.", "A").to_wire(), "test"))
        assert sorted(record.address for record in reply.answer[0]) == ["127.0.0.2", "127.0.0.3"]
        reply = dns.message.from_wire(server.answer(dns.message.make_query("other.test.", "A").to_wire(), "test"))
        assert reply.rcode() == dns.rcode.NXDOMAIN
        reply = dns.message.from_wire(server.answer(dns.message.make_query("models.test.", "AAAA").to_wire(), "t"))
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []
        with pytest.raises(ValueError):
            server.set("models.test", ["not-an-address"])
