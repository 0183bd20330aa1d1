"""The scale-out run: a headless Service played on loopback, under steady Locust load through two gateways.

    steady   N model servers in DNS: calls spread evenly (each server's share, counted by the server)
    add      one more published in DNS: time until each gateway sends it a call (<= resolve_s + 1 s)
    drain    one removed from DNS and sent SIGTERM at the same moment: zero failed requests, exit 0
    kill     one SIGKILLed (still in DNS): each gateway ejects it; its share moves, no wrong answer
    routing  a canary route with request keys through both gateways (REST and gRPC): the same servable

Every request Locust sent is judged afterwards (``loadtest.reliability.load``): failures are counted per
event, and every 200 must carry the class the model itself predicts for that image.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from loadtest import procs
from loadtest.reliability.common import CheckResult, Context, Server
from loadtest.reliability.load import BackgroundLoad, Event, describe, reference_classes, status_counts, wrong_answers
from loadtest.scaleout import routing
from loadtest.scaleout.fleet import Fleet, GatewayWatch, Member, gateway_counter

ROUTE: dict[str, dict[str, float]] = {"split": {"cnn": 3, "cnn_canary": 1}}  # the canary gets a quarter
FIRST_CALL_SLACK_S = 1.0  # after a re-resolution, the next call (at the load's rate) goes to the new member
EJECT_WITHIN_S = 5.0
RETRIES = "tensorgate_gateway_upstream_retries"
SHARE_TOLERANCE = 0.25  # each share within 25% of an even one (round-robin makes it near exact)


@dataclass(frozen=True)
class Sizes:
    members: int  # in DNS at the start; one more is added
    users: int  # Locust users per class (REST, gRPC) per gateway
    rate: float  # requests per second per gateway, paced
    phase_s: float  # steady load measured after each event
    resolve_s: float  # the gateways' upstreams.default.resolve_s
    keys: int  # request keys in the routing check


QUICK = Sizes(members=3, users=1, rate=20.0, phase_s=4.0, resolve_s=1.0, keys=40)
FULL = Sizes(members=4, users=2, rate=40.0, phase_s=30.0, resolve_s=2.0, keys=400)


@dataclass
class Phase:
    name: str
    start: float
    end: float
    live: list[str]  # members that should take calls
    server_calls: dict[str, float]  # Predict calls each member answered in the phase (its own count)
    gateway_calls: dict[str, dict[str, float]]  # gateway -> target -> OK Predict calls in the phase

    def shares(self) -> dict[str, float]:
        total = sum(self.server_calls.values()) or 1.0
        return {member: calls / total for member, calls in self.server_calls.items()}

    def gateway_shares(self) -> dict[str, dict[str, float]]:
        shares = {}
        for gateway, calls in self.gateway_calls.items():
            total = sum(calls.values()) or 1.0
            shares[gateway] = {target: count / total for target, count in calls.items()}
        return shares


@dataclass
class Run:
    ctx: Context
    sizes: Sizes
    result: CheckResult
    fleet: Fleet
    gateways: dict[str, Server] = field(default_factory=dict)
    watches: dict[str, GatewayWatch] = field(default_factory=dict)
    loads: dict[str, BackgroundLoad] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)  # event -> wall-clock time

    def members(self, addresses: list[str]) -> list[Member]:
        return [self.fleet.members[address] for address in addresses]

    def phase(self, name: str, live: list[str]) -> Phase:
        """Steady load for ``phase_s``: calls per member counted by the members and by each gateway."""
        members = self.members(live)
        start, server_before = time.time(), {m.address: m.predict_calls() for m in members}
        gateway_before = {name: watch.calls(start) for name, watch in self.watches.items()}
        time.sleep(self.sizes.phase_s)
        end = time.time()
        server_after = {m.address: m.predict_calls() for m in members}
        time.sleep(2 * GatewayWatch.period)
        targets = {m.target: m.address for m in self.fleet.members.values()}
        gateway_calls = {}
        for gateway, watch in self.watches.items():
            after = watch.calls(end)
            deltas = {targets.get(t, t): after[t] - gateway_before[gateway].get(t, 0.0) for t in after}
            gateway_calls[gateway] = {member: calls for member, calls in deltas.items() if calls > 0}
        phase = Phase(name, start, end, live, {a: server_after[a] - server_before[a] for a in live}, gateway_calls)
        self.phases.append(phase)
        self.judge_shares(phase)
        return phase

    def retries(self) -> dict[str, float]:
        """Each gateway's upstream retries so far (a call retried on another target after UNAVAILABLE)."""
        return {name: gateway_counter(gateway, RETRIES) for name, gateway in self.gateways.items()}

    def judge_shares(self, phase: Phase) -> None:
        even = 1.0 / len(phase.live)
        for member, share in phase.shares().items():
            self.result.expect(
                abs(share - even) <= SHARE_TOLERANCE * even,
                f"{phase.name}: {member} answered {share:.1%} of the calls (even: {even:.1%})",
            )
        for gateway, shares in phase.gateway_shares().items():
            strays = sorted(set(shares) - set(phase.live))
            self.result.expect(not strays, f"{phase.name}: {gateway} sent calls to {strays}, which are not live")
            for member in phase.live:
                share = shares.get(member, 0.0)
                self.result.expect(
                    abs(share - even) <= SHARE_TOLERANCE * even,
                    f"{phase.name}: {gateway} sent {share:.1%} of its calls to {member} (even: {even:.1%})",
                )


def prepare_repo(ctx: Context) -> Any:
    """cnn, and the same model as ``cnn_canary`` (the canary route's second servable), with monitoring on."""
    repo = ctx.model_repo("scaleout", ("cnn",))
    shutil.copytree(repo / "cnn", repo / "cnn_canary")
    base = repo / "cnn_canary"
    config = (repo / "models.config").read_text().rstrip().removesuffix("}")
    config += f'  config {{ name: "cnn_canary" base_path: "{base}" model_platform: "tensorflow" }}\n}}\n'
    (repo / "models.config").write_text(config)
    (repo / "monitoring.config").write_text(
        'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'
    )
    return repo


def run(ctx: Context) -> tuple[CheckResult, dict[str, Any]]:
    sizes = QUICK if ctx.quick else FULL
    result = CheckResult(
        "scaleout",
        what=(
            f"{sizes.members} model servers behind one DNS name (+1 added), 2 gateways resolving it every "
            f"{sizes.resolve_s:g} s, Locust {sizes.rate:g} req/s through each; add, drain (DNS + SIGTERM), "
            "kill (SIGKILL), canary route with request keys"
        ),
    )
    details: dict[str, Any] = {"sizes": sizes.__dict__}
    addresses = [f"127.0.0.{index + 2}" for index in range(sizes.members + 1)]
    repo = prepare_repo(ctx)
    fleet = Fleet(ctx, repo, addresses)
    state = Run(ctx, sizes, result, fleet)
    started = time.monotonic()
    try:
        for address in addresses:  # in parallel: each imports TensorFlow and loads its models
            fleet.start(address)
        for member in fleet.members.values():
            fleet.wait_ready(member, ["cnn", "cnn_canary"])
        reference = reference_classes(fleet.members[addresses[0]].server)
        fleet.publish(addresses[:-1])
        overrides = {
            "upstreams": {"default": {"targets": [fleet.target], "resolve_s": sizes.resolve_s}},
            "routes": {"canary": ROUTE},
            "timeouts": {"request_s": 10.0},
            "ejection": {"consecutive_failures": 3},
        }
        for name in ("gateway-a", "gateway-b"):
            state.gateways[name] = ctx.start_gateway(repo, [fleet.target], name=name, overrides=overrides)
            state.watches[name] = GatewayWatch(state.gateways[name])
        for name, gateway in state.gateways.items():
            state.loads[name] = BackgroundLoad(
                ctx, gateway, f"load-{name}", users=sizes.users, target_rps=sizes.rate
            ).start()
        for load in state.loads.values():
            load.wait_for_events(10)
        details["setup_s"] = round(time.monotonic() - started, 1)
        scenario(state, addresses, details)
        details["locust_cpu"] = {name: cpu_share(load.locust) for name, load in state.loads.items()}
        cpu = details.setdefault("process_cpu", {})
        cpu.update({name: cpu_share(server.managed) for name, server in state.gateways.items()})
        for member in fleet.members.values():
            cpu.setdefault(member.address, cpu_share(member.server.managed))
    finally:
        for load in state.loads.values():
            load.stop()
        for watch in state.watches.values():
            watch.stop()
        fleet.close()
    judge_events(state, reference, details)
    details["phases"] = [
        {
            "name": p.name,
            "seconds": round(p.end - p.start, 2),
            "live": p.live,
            "server_calls": p.server_calls,
            "shares": {m: round(s, 4) for m, s in p.shares().items()},
            "gateway_shares": {
                g: {t: round(s, 4) for t, s in shares.items()} for g, shares in p.gateway_shares().items()
            },
        }
        for p in state.phases
    ]
    result.seconds = time.monotonic() - started
    return result, details


def scenario(state: Run, addresses: list[str], details: dict[str, Any]) -> None:
    sizes, fleet, result = state.sizes, state.fleet, state.result
    first = addresses[:-1]
    retries = details.setdefault("retries_at", {})
    retries["steady"] = state.retries()
    state.events["steady"] = time.time()
    state.phase("steady", first)

    added = addresses[-1]
    retries["add"] = state.retries()
    state.events["add"] = fleet.publish(addresses)
    target = fleet.members[added].target
    first_call = {}
    for name, watch in state.watches.items():
        seen = watch.wait("called", target, state.events["add"], timeout=sizes.resolve_s + 15)
        first_call[name] = None if seen is None else round(seen - state.events["add"], 3)
        bound = sizes.resolve_s + FIRST_CALL_SLACK_S
        result.expect(
            seen is not None and seen - state.events["add"] <= bound,
            f"add: {name} first called {added} {first_call[name]} s after it was published (bound {bound:g} s)",
        )
    details["first_call_s"] = first_call
    state.phase("after add", addresses)

    drained = addresses[1]
    retries["drain"] = state.retries()
    live = [a for a in addresses if a != drained]
    state.events["drain"] = fleet.publish(live)
    member = fleet.members[drained]
    details.setdefault("process_cpu", {})[drained] = cpu_share(member.server.managed)
    member.server.managed.process.send_signal(signal.SIGTERM)
    try:
        code = member.server.managed.process.wait(30)
    except Exception:
        code = None
    details["drain_exit_code"] = code
    result.expect(code == 0, f"drain: {drained} exited with {code} after SIGTERM (expected 0: a clean drain)")
    drain_gone = {}
    for name, watch in state.watches.items():
        gone = watch.wait("gone", member.target, state.events["drain"], timeout=sizes.resolve_s + 10)
        drain_gone[name] = None if gone is None else round(gone - state.events["drain"], 3)
        result.expect(gone is not None, f"drain: {name} still lists {drained} as a target")
    details["drain_target_gone_s"] = drain_gone
    state.phase("after drain", live)

    killed = addresses[2]
    retries["kill"] = state.retries()
    victim = fleet.members[killed]
    details.setdefault("process_cpu", {})[killed] = cpu_share(victim.server.managed)
    state.events["kill"] = time.time()
    os.killpg(victim.server.managed.pid, signal.SIGKILL)
    victim.server.managed.process.wait(10)
    ejected = {}
    for name, watch in state.watches.items():
        seen = watch.wait("ejected", victim.target, state.events["kill"], timeout=EJECT_WITHIN_S + 5)
        ejected[name] = None if seen is None else round(seen - state.events["kill"], 3)
        result.expect(
            seen is not None and seen - state.events["kill"] <= EJECT_WITHIN_S,
            f"kill: {name} ejected {killed} after {ejected[name]} s (bound {EJECT_WITHIN_S:g} s)",
        )
    details["kill_to_ejection_s"] = ejected
    survivors = [a for a in live if a != killed]
    state.phase("after kill", survivors)
    state.events["unpublish"] = fleet.publish(survivors)  # the endpoint controller catches up

    retries["routing"] = state.retries()
    state.events["routing"] = time.time()
    details["routing"] = routing.check(state.gateways, sizes.keys, ROUTE["split"], result)
    state.events["end"] = time.time()
    retries["end"] = state.retries()


def cpu_share(managed: procs.Managed | None) -> dict[str, float]:
    """CPU seconds of a process tree so far and its share of one core over its life."""
    if managed is None:
        return {}
    processes = managed.tree()
    cpu = procs.cpu_seconds(processes)
    try:
        alive = time.time() - managed.psutil.create_time()
    except Exception:
        alive = 0.0
    return {"cpu_s": round(cpu, 2), "core_share": round(cpu / alive, 3) if alive else 0.0}


def window(events: list[Event], start: float, end: float) -> list[Event]:
    return [event for event in events if start <= event.t < end]


def judge_events(state: Run, reference: list[int], details: dict[str, Any]) -> None:
    result, times = state.result, state.events
    order = ["steady", "add", "drain", "kill", "routing", "end"]
    per_event: dict[str, dict[str, Any]] = {}
    total = 0
    for gateway, load in state.loads.items():
        events = load.events()
        total += len(events)
        wrong = wrong_answers(events, {"1": reference})
        for event in wrong[:3]:
            result.fail(f"{gateway}: a 200 with a wrong or empty answer: {describe(event)}")
        for name, following in itertools.pairwise(order):
            if name not in times or following not in times:
                continue
            chosen = window(events, times[name], times[following])
            failed = [e for e in chosen if not e.ok]
            marks = details.get("retries_at", {})
            retried = marks.get(following, {}).get(gateway, 0.0) - marks.get(name, {}).get(gateway, 0.0)
            per_event.setdefault(name, {})[gateway] = {
                "requests": len(chosen),
                "retries": int(retried) if name in marks and following in marks else None,
                "failed": len(failed),
                "wrong": sum(1 for e in wrong if times[name] <= e.t < times[following]),
                "outcomes": status_counts(chosen),
            }
            allowed = name == "kill"  # calls in flight on a killed server may fail; they are reported
            for event in failed[:3] if not allowed else []:
                result.fail(f"{name}: {gateway}: a request failed: {describe(event)}")
        if "kill" in times and "routing" in times:
            ejected_at = max((t for t in details.get("kill_to_ejection_s", {}).values() if t is not None), default=0.0)
            late = [e for e in events if e.start >= times["kill"] + ejected_at and e.t < times["routing"] and not e.ok]
            for event in late[:3]:
                result.fail(f"kill: {gateway}: a request failed after the ejection: {describe(event)}")
    details["events"] = per_event
    details["requests"] = total
    result.amount = f"{total} Locust requests through 2 gateways; {len(state.phases)} measured phases"
    figures = result.figures
    figures["requests"] = total
    figures["failed_by_event"] = {
        name: sum(g["failed"] for g in gateways.values()) for name, gateways in per_event.items()
    }
    figures["first_call_s"] = details.get("first_call_s")
    figures["kill_to_ejection_s"] = details.get("kill_to_ejection_s")
