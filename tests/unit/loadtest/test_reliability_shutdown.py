"""The shutdown check's sizing and judgement: the load scales with the machine, and a server that drops
a request in flight, or a load too light to test a drain, fails the check."""

from __future__ import annotations

from loadtest.reliability import shutdown
from loadtest.reliability.common import CheckResult
from loadtest.reliability.shutdown import Load, Outcome, Phase, judge, plan


def test_plan_keeps_the_work_the_same_on_a_faster_or_slower_machine() -> None:
    ours = plan(3000.0, grace=10.0, min_clients=12)
    for rate in (1500.0, 6000.0, 12000.0):
        other = plan(rate, grace=10.0, min_clients=12)
        assert other.rows <= shutdown.MAX_ROWS and other.clients >= 12
        seconds = other.rows * other.clients / rate
        assert abs(seconds - ours.rows * ours.clients / 3000.0) < 0.2, (rate, other)
        assert 0.2 * 10.0 <= seconds <= 0.3 * 10.0  # about WORK_SHARE of the grace period
    assert plan(12000.0, 10.0, 12).clients > ours.clients  # rows capped: more requests instead


def test_plan_bounds() -> None:
    slow = plan(10.0, grace=10.0, min_clients=12)
    assert (slow.rows, slow.clients) == (shutdown.MIN_ROWS, 12)
    fast = plan(10_000_000.0, grace=10.0, min_clients=12)
    assert (fast.rows, fast.clients) == (shutdown.MAX_ROWS, shutdown.MAX_CLIENTS)
    assert fast.protocols.count("rest") == fast.protocols.count("grpc") == shutdown.MAX_CLIENTS // 2


def drained_phase() -> Phase:
    phase = Phase("gateway", grace_s=10.0, sent_at=100.0, exit_code=0, exit_s=4.0)
    phase.in_flight = [
        Outcome("rest", 99.0, 102.0, "200", True),
        Outcome("grpc", 99.0, 103.0, "OK", True),
    ]
    phase.late = [Outcome("rest", 100.3, 100.31, "refused", True), Outcome("grpc", 100.3, 100.31, "UNAVAILABLE", True)]
    return phase


def judged(phase: Phase) -> list[str]:
    result = CheckResult("shutdown")
    judge(result, phase, Load(256, 2), slack_s=2.0)
    return result.failures


def test_a_clean_drain_passes() -> None:
    assert judged(drained_phase()) == []


def test_a_dropped_request_in_flight_fails() -> None:
    phase = drained_phase()
    phase.in_flight[1] = Outcome("grpc", 99.0, 100.1, "CANCELLED", True, "the server went away")
    assert any("in flight at SIGTERM ended CANCELLED" in failure for failure in judged(phase))
    phase = drained_phase()
    phase.in_flight[0] = Outcome("rest", 99.0, 100.1, "reset", True)
    assert any("rest request in flight at SIGTERM ended reset" in failure for failure in judged(phase))


def test_too_light_a_load_fails() -> None:
    phase = drained_phase()
    phase.in_flight = phase.in_flight[:1]
    assert any("could not be made heavy enough" in failure for failure in judged(phase))


def test_a_late_request_served_after_refusing_began_fails() -> None:
    phase = drained_phase()
    phase.late.append(Outcome("rest", 100.8, 100.9, "200", True))
    assert any("started after the first refusal" in failure for failure in judged(phase))
