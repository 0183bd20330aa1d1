"""Soak: a long run at about 70% of peak throughput through the gateway.

First a short closed-loop step measures the peak (successful requests per second, REST and gRPC users
together, first seconds dropped as warmup); then Locust paces the same users at 70% of it for the soak
(full: 10 minutes; quick: 20 s). Pass: no failed request and no 200 whose answer differs from the
model's own; p99 of the last window within 1.5x of the first (windows of one minute; quick: a quarter
of the run); each server's RSS grows less than 10% from the end of the first window to the end; and
the achieved rate is within 10% of the target (else the soak did not run at the load it claims).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from loadtest import procs
from loadtest.reliability.common import CheckResult, Context, Server, timed
from loadtest.reliability.load import BackgroundLoad, Event, describe, reference_classes, status_counts, wrong_answers

LOAD_SHARE = 0.7
P99_RATIO_MAX = 1.5
RSS_GROWTH_MAX = 0.10
RATE_TOLERANCE = 0.10


@dataclass(frozen=True)
class Sizes:
    users: int  # per user class (REST and gRPC)
    peak_s: float  # closed-loop step that measures the peak
    warmup_s: float  # dropped from the start of the peak step
    soak_s: float
    window_s: float  # first and last windows compared (p99, RSS)


QUICK = Sizes(users=4, peak_s=8.0, warmup_s=2.0, soak_s=20.0, window_s=5.0)
FULL = Sizes(users=8, peak_s=40.0, warmup_s=10.0, soak_s=600.0, window_s=60.0)


class RssSampler:
    """RSS of each server's process tree every ``period`` s, in a thread."""

    def __init__(self, servers: dict[str, Server], period: float = 1.0) -> None:
        self.servers, self.period = servers, period
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            self.samples.append((now, {n: procs.rss_bytes(s.managed.tree()) for n, s in self.servers.items()}))
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, when: float) -> dict[str, int]:
        """The last sample taken at or before ``when`` (the first one if none)."""
        chosen = self.samples[0][1]
        for t, values in self.samples:
            if t > when:
                break
            chosen = values
        return chosen


def p99(events: list[Event]) -> float:
    return float(np.percentile([e.ms for e in events], 99)) if events else float("nan")


def run(ctx: Context) -> CheckResult:
    sizes = QUICK if ctx.quick else FULL
    result = CheckResult(
        "soak",
        what=(
            f"peak measured closed-loop ({sizes.users} REST + {sizes.users} gRPC users), then "
            f"{LOAD_SHARE:.0%} of it through the gateway; every answer checked against the model's own"
        ),
    )
    with timed(result):
        repo = ctx.model_repo("soak")
        modelserver = ctx.start_modelserver(repo)
        gateway = ctx.start_gateway(repo, [modelserver.grpc])
        reference = reference_classes(modelserver)

        with BackgroundLoad(ctx, gateway, "soak-peak", users=sizes.users, run_time=sizes.peak_s + 60) as peak_load:
            first = peak_load.wait_for_events(5)[0].t
            time.sleep(max(0.0, first + sizes.peak_s - time.time()))
        measured = [e for e in peak_load.events(first + sizes.warmup_s) if e.t <= first + sizes.peak_s]
        peak = sum(e.ok for e in measured) / (sizes.peak_s - sizes.warmup_s)
        result.figures["peak_rps"] = round(peak, 1)
        if peak <= 0:
            result.fail(f"no successful request in the peak step: {status_counts(measured)}")
            return result
        target = LOAD_SHARE * peak
        result.figures["target_rps"] = round(target, 1)

        servers = {"gateway": gateway, "modelserver": modelserver}
        with RssSampler(servers) as rss:
            with BackgroundLoad(
                ctx, gateway, "soak", users=sizes.users, target_rps=target, run_time=sizes.soak_s + 60
            ) as load:
                start = load.wait_for_events(1)[0].t
                time.sleep(max(0.0, start + sizes.soak_s - time.time()))
            end = start + sizes.soak_s
        events = [e for e in load.events(start) if e.t <= end]
        result.amount = f"{sizes.soak_s / 60:.1f} min, {len(events):,} requests at {target:.0f} req/s target"

        failed = [e for e in events if not e.ok]
        wrong = wrong_answers(events, {"1": reference})
        achieved = len(events) / sizes.soak_s
        first_window = [e for e in events if e.t < start + sizes.window_s]
        last_window = [e for e in events if e.t >= end - sizes.window_s]
        p99_first, p99_last = p99(first_window), p99(last_window)
        rss_first, rss_last = rss.at(start + sizes.window_s), rss.at(end)
        result.figures.update(
            requests=len(events),
            achieved_rps=round(achieved, 1),
            failed=len(failed),
            wrong_answers=len(wrong),
            p50_ms=round(float(np.percentile([e.ms for e in events], 50)), 2) if events else None,
            p99_first_window_ms=round(p99_first, 2),
            p99_last_window_ms=round(p99_last, 2),
            p99_ratio=round(p99_last / p99_first, 2) if p99_first else None,
            outcomes=status_counts(events),
        )
        for name in servers:
            growth = (rss_last[name] - rss_first[name]) / rss_first[name] if rss_first[name] else float("nan")
            result.figures[f"{name}_rss_mib"] = f"{rss_first[name] / 2**20:.0f} -> {rss_last[name] / 2**20:.0f}"
            result.figures[f"{name}_rss_growth_pct"] = round(100 * growth, 1)
            result.expect(
                growth < RSS_GROWTH_MAX,
                f"{name} RSS grew {100 * growth:.1f}% ({rss_first[name] / 2**20:.0f} -> "
                f"{rss_last[name] / 2**20:.0f} MiB), limit {RSS_GROWTH_MAX:.0%}",
            )
        result.expect(bool(events), "no request finished during the soak")
        if failed:
            result.fail(f"{len(failed)} failed requests {status_counts(failed)}; first: {describe(failed[0])}")
        if wrong:
            result.fail(f"{len(wrong)} answers differ from the model's own; first: {describe(wrong[0])}")
        result.expect(
            p99_last <= P99_RATIO_MAX * p99_first,
            f"p99 of the last {sizes.window_s:.0f} s ({p99_last:.1f} ms) is over {P99_RATIO_MAX}x the first's "
            f"({p99_first:.1f} ms)",
        )
        result.expect(
            achieved >= (1 - RATE_TOLERANCE) * target,
            f"achieved {achieved:.1f} req/s, under {1 - RATE_TOLERANCE:.0%} of the {target:.1f} req/s target",
        )
    return result
