"""Fault injection under load: the model server is SIGKILLed while Locust drives the gateway.

(a) One upstream target: kill it (the whole process group), keep it down, start it again on the same
ports. The gateway must answer 503 / UNAVAILABLE quickly (no request hangs to the deadline), never a
200 with a wrong or empty answer, and be back to 100% success soon after the model server is.
(b) Two targets behind one upstream: kill one. Requests may fail only until the gateway ejects it
(``ejection.consecutive_failures`` UNAVAILABLE answers; UNAVAILABLE is retried on the other target, so
usually none fail at all), none after; then start it again and see the prober take it back and
traffic reach it (the gateway's ``/metrics``: target health and OK calls per target).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest.reliability.common import SERVABLE, CheckResult, Context, Server, timed
from loadtest.reliability.load import (
    BackgroundLoad,
    Event,
    describe,
    reference_classes,
    status_counts,
    wrong_answers,
)

REQUEST_S = 10.0  # the gateway's request deadline (timeouts.request_s), set explicitly below
EJECT_AFTER = 3  # ejection.consecutive_failures
FAST_503_S = 2.0  # "fast": the first 503 / UNAVAILABLE after the kill, at most this long after it
RECOVERY_S = 5.0  # the gateway sees a restarted model server within this long of it being ready
UNAVAILABLE = {"rest": "503", "grpc": "UNAVAILABLE"}


@dataclass
class Sizes:
    users: int  # per user class (REST and gRPC)
    before_s: float  # steady load before the fault
    outage_s: float  # how long the killed model server stays down
    settle_s: float  # all-success load that must follow recovery
    rate: float  # requests per second in all (paced, so the outage's fast 503s are not a busy loop)


QUICK = Sizes(users=2, before_s=1.0, outage_s=3.0, settle_s=2.0, rate=100.0)
FULL = Sizes(users=4, before_s=5.0, outage_s=10.0, settle_s=10.0, rate=200.0)


def run(ctx: Context) -> CheckResult:
    sizes = QUICK if ctx.quick else FULL
    result = CheckResult(
        "faults",
        what=(
            "Locust (REST instances + gRPC Predict, paced) through the gateway; (a) SIGKILL the only "
            f"model server, {sizes.outage_s:g} s down, restart on the same ports; (b) two targets, SIGKILL one "
            "until ejected, then restart it"
        ),
    )
    with timed(result):
        repo = ctx.model_repo("faults")
        first = ctx.start_modelserver(repo, "modelserver-a")
        second = ctx.start_modelserver(repo, "modelserver-b", wait=False)  # loads while (a) runs
        reference = reference_classes(first)
        overrides = {"timeouts": {"request_s": REQUEST_S}, "ejection": {"consecutive_failures": EJECT_AFTER}}
        single = ctx.start_gateway(repo, [first.grpc], name="gateway-single", overrides=overrides)
        requests_a = single_target(ctx, result, single, first, repo, reference, sizes)
        wait_available(second)
        pair = ctx.start_gateway(repo, [first.grpc, second.grpc], name="gateway-pair", overrides=overrides)
        requests_b = two_targets(ctx, result, pair, second, repo, reference, sizes)
        result.amount = f"{requests_a + requests_b} requests ({requests_a} in (a), {requests_b} in (b))"
    return result


def kill_group(server: Server) -> float:
    """SIGKILL the model server's whole process group; the wall-clock time of the kill."""
    killed = time.time()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.managed.pid, signal.SIGKILL)
    server.managed.process.wait(10)
    return killed


def ports(server: Server) -> tuple[int, int]:
    return int(server.grpc.rsplit(":", 1)[1]), int(server.rest.rsplit(":", 1)[1])


def wait_available(server: Server, timeout: float = 180.0) -> None:
    def available() -> bool:
        answer = httpx.get(f"{server.rest}/v1/models/{SERVABLE}", timeout=2).json()
        return any(v.get("state") == "AVAILABLE" for v in answer.get("model_version_status", []))

    server.managed.wait_ready(available, timeout)


def settled(since: float, seconds: float, per_protocol: int = 10) -> Callable[[list[Event]], bool]:
    """A wait condition: the last ``seconds`` of events all succeeded, with traffic on both paths."""

    def done(events: list[Event]) -> bool:
        if not events or time.time() - since < seconds:
            return False
        window = [e for e in events if e.t >= time.time() - seconds]
        counts = {p: sum(e.protocol == p for e in window) for p in ("rest", "grpc")}
        return all(e.ok for e in window) and min(counts.values()) >= per_protocol

    return done


def single_target(
    ctx: Context,
    result: CheckResult,
    gateway: Server,
    victim: Server,
    repo: Path,
    reference: list[int],
    sizes: Sizes,
) -> int:
    with BackgroundLoad(ctx, gateway, "faults-single", users=sizes.users, target_rps=sizes.rate) as load:
        load.wait_for_events(20)
        time.sleep(sizes.before_s)
        killed = kill_group(victim)
        time.sleep(sizes.outage_s)
        restarted = time.time()
        ctx.start_modelserver(repo, "modelserver-a", ports=ports(victim))
        ready = time.time()
        try:
            load.wait_until(settled(ready, sizes.settle_s), since=ready, timeout=RECOVERY_S + sizes.settle_s + 20)
        except TimeoutError:
            result.fail("(a) the gateway did not get back to 100% success after the model server restarted")
    events = load.events()
    judge_single(result, events, reference, killed, restarted, ready)
    return len(events)


def judge_single(
    result: CheckResult, events: list[Event], reference: list[int], killed: float, restarted: float, ready: float
) -> None:
    before = [e for e in events if e.t < killed]
    after = [e for e in events if e.t >= killed]
    failed = [e for e in after if not e.ok]
    figures = result.figures
    figures["a_requests"] = len(events)
    figures["a_outcomes"] = status_counts(events)
    for event in [e for e in before if not e.ok][:3]:
        result.fail(f"(a) failed before the kill: {describe(event)}")
    for protocol, code in UNAVAILABLE.items():
        first = next((e for e in failed if e.protocol == protocol), None)
        if not result.expect(first is not None, f"(a) no {protocol} request failed after the kill"):
            continue
        assert first is not None
        seconds = first.t - killed
        figures[f"a_kill_to_{code.lower()}_{protocol}_s"] = round(seconds, 3)
        result.expect(seconds <= FAST_503_S, f"(a) first {protocol} {code} came {seconds:.2f} s after the kill")
        others = [e for e in failed if e.protocol == protocol and e.status != code]
        for event in others[:3]:
            result.fail(f"(a) a failure other than {code} during the outage: {describe(event)}")
    outage = [e for e in events if e.start < ready and e.t >= killed]
    worst = max((e.ms for e in outage), default=0.0)
    figures["a_outage_max_latency_ms"] = round(worst, 1)
    figures["a_outage_requests"] = len(outage)
    result.expect(
        worst < REQUEST_S * 1000, f"(a) a request took {worst:.0f} ms during the outage (deadline {REQUEST_S:g} s)"
    )
    wrong = wrong_answers(events, {"1": reference})
    figures["a_wrong_or_empty_200"] = len(wrong)
    for event in wrong[:3]:
        result.fail(f"(a) a 200 with a wrong or empty answer: {describe(event)}")
    last_failure = failed[-1].t if failed else killed
    figures["a_modelserver_start_s"] = round(ready - restarted, 2)
    figures["a_restart_to_full_success_s"] = round(max(0.0, last_failure - restarted), 2)
    figures["a_ready_to_full_success_s"] = round(max(0.0, last_failure - ready), 2)
    result.expect(
        last_failure - ready <= RECOVERY_S,
        f"(a) failures went on {last_failure - ready:.1f} s after the model server was ready again",
    )


@dataclass
class TargetWatch:
    """Polls the gateway's /metrics: health and OK Predict calls of one target, over time."""

    gateway: Server
    target: str
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (time, healthy, OK calls)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(0.1):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    self.samples.append((time.time(), *self._read(client.get(self.gateway.rest + "/metrics").text)))

    def _read(self, text: str) -> tuple[float, float]:
        healthy, ok = -1.0, 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("target") != self.target:
                    continue
                if sample.name == "tensorgate_gateway_upstream_target_healthy":
                    healthy = sample.value
                elif sample.name == "tensorgate_gateway_upstream_calls_total" and sample.labels.get("code") == "OK":
                    ok += sample.value if sample.labels.get("method") == "Predict" else 0.0
        return healthy, ok

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, since: float, healthy: float) -> float | None:
        return next((t for t, h, _ in list(self.samples) if t >= since and h == healthy), None)

    def ok_calls(self, at: float) -> float:
        return max((ok for t, _, ok in list(self.samples) if t <= at), default=0.0)

    def wait(self, since: float, healthy: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first(since, healthy)
            if found is not None:
                return found
            time.sleep(0.1)
        return None


def two_targets(
    ctx: Context, result: CheckResult, gateway: Server, victim: Server, repo: Path, reference: list[int], sizes: Sizes
) -> int:
    figures = result.figures
    watch = TargetWatch(gateway, victim.grpc)
    try:
        with BackgroundLoad(ctx, gateway, "faults-pair", users=sizes.users, target_rps=sizes.rate) as load:
            load.wait_for_events(20)
            time.sleep(sizes.before_s)
            calls_before = watch.ok_calls(time.time())
            killed = kill_group(victim)
            ejected = watch.wait(killed, 0.0, timeout=10)
            if not result.expect(ejected is not None, "(b) the killed target was not ejected within 10 s"):
                ejected = time.time()
            assert ejected is not None
            time.sleep(sizes.outage_s)
            restarted = time.time()
            ctx.start_modelserver(repo, "modelserver-b", ports=ports(victim))
            ready = time.time()
            back = watch.wait(restarted, 1.0, timeout=15)
            result.expect(back is not None, "(b) the restarted target was not taken back within 15 s")
            calls_at_back = watch.ok_calls(time.time())
            deadline = time.monotonic() + 10  # until traffic reaches it again; judged below
            while watch.ok_calls(time.time()) <= calls_at_back and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(sizes.settle_s)
            finished = time.time()
    finally:
        watch.stop()
    events = load.events()
    failed = [e for e in events if not e.ok]
    after_ejection = [e for e in events if e.start >= ejected]
    figures["b_requests"] = len(events)
    figures["b_outcomes"] = status_counts(events)
    figures["b_failed"] = len(failed)
    figures["b_kill_to_ejection_s"] = round(ejected - killed, 2)
    figures["b_victim_ok_calls_before_kill"] = calls_before
    ok_after = sum(e.ok for e in after_ejection)
    figures["b_success_after_ejection_pct"] = round(100.0 * ok_after / max(1, len(after_ejection)), 3)
    for event in [e for e in after_ejection if not e.ok][:3]:
        result.fail(f"(b) failed after the target was ejected: {describe(event)}")
    for event in [e for e in failed if e.start < killed][:3]:
        result.fail(f"(b) failed before the kill: {describe(event)}")
    wrong = wrong_answers(events, {"1": reference})
    figures["b_wrong_or_empty_200"] = len(wrong)
    for event in wrong[:3]:
        result.fail(f"(b) a 200 with a wrong or empty answer: {describe(event)}")
    result.expect(calls_before > 0, "(b) the victim target served nothing before the kill (no round-robin?)")
    if back is not None:
        figures["b_restart_to_rejoin_s"] = round(back - restarted, 2)
        figures["b_modelserver_start_s"] = round(ready - restarted, 2)
        served = watch.ok_calls(finished) - calls_at_back
        figures["b_victim_ok_calls_after_rejoin"] = served
        result.expect(served > 0, "(b) no traffic reached the restarted target after it was taken back")
    return len(events)
