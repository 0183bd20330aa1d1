"""Graceful shutdown under load: SIGTERM while REST and gRPC requests are in flight.

For the gateway (in front of a real model server) and then for the model server itself: start
concurrent large-batch requests (REST and gRPC, each on its own connection, slow enough to be in
flight), send SIGTERM once they are all sent, then keep starting new requests until the process is
gone. Pass: every request in flight at SIGTERM answers 200 / OK with the right classes for every row;
new requests are refused cleanly (connection refused, 503 with ``{"error"}``, or gRPC UNAVAILABLE)
from at most 2 s after SIGTERM and without exception after the first refusal (before it the server has
not handled the signal yet), never a hang or a wrong answer; the process exits with status 0 within
the grace period (gateway: ``timeouts.shutdown_grace_s``).

A request counts as in flight only once the server has it: the gateway is sent SIGTERM only after its
upstream in-flight gauge shows every unfinished request in a call to the model server (a request still
being uploaded or waiting to be read is refused at shutdown, not drained: uvicorn closes connections
whose request it has not started). The model server reads and decodes bodies off its event loop, so for
it the settle time is enough.

The load sizes itself on the machine at hand (see ``plan``): from the rows per second measured first,
enough requests of up to 256 rows (the gateway's batch limit) that together they take about a quarter of
the grace period, so they are still running at SIGTERM on a fast machine and drain in time on a slow one.
If fewer than one REST and one gRPC request are still running when SIGTERM would be sent, nothing is
sent: the requests finish, the load is planned again from the rate they were served at (at least twice
as heavy), and it tries again, at most 3 times. The check fails only if the load could not be made heavy
enough.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np
import orjson

from loadtest.reliability.common import API_KEY, SERVABLE, CheckResult, Context, Server, timed
from serving import protos
from serving.modelserver.app import SHUTDOWN_GRACE_S
from serving.tensors import from_numpy, to_numpy

KEY = {"x-api-key": API_KEY}
HANG_S = 30.0  # a request with no answer after this long is a hang
SETTLE_S = 0.8  # from the first request sent to SIGTERM
STOP_ACCEPTING_S = 2.0  # from SIGTERM to the first refused new request
REFUSALS = ("refused", "reset", "503", "UNAVAILABLE", "CANCELLED")
WORK_SHARE = 1 / 4  # of the grace period: the work of all the requests in flight together, as measured
MAX_ROWS = 256  # per request: the gateway's default limits.max_batch_size
MIN_ROWS = 16
MAX_CLIENTS = 128  # concurrent requests (threads, each with its own connection)
TRIES = 3


@dataclass
class Outcome:
    protocol: str
    started: float
    ended: float = 0.0
    status: str = ""  # "200", "503", "refused", "UNAVAILABLE", "OK", "hang", ...
    correct: bool = False
    detail: str = ""


@dataclass
class Phase:
    target: str
    grace_s: float
    in_flight: list[Outcome] = field(default_factory=list)
    late: list[Outcome] = field(default_factory=list)
    exit_code: int | None = None
    exit_s: float = 0.0
    sent_at: float = 0.0  # time.monotonic() of the SIGTERM


def batch(rows: int) -> np.ndarray:
    """Distinct images per row, so a truncated or mixed-up answer shows in the classes."""
    rng = np.random.default_rng(rows)
    return rng.integers(0, 256, (rows, 28, 28, 1)).astype(np.float32)


def predict_request(array: np.ndarray) -> Any:
    request = protos.PredictRequest()
    request.model_spec.name = SERVABLE
    from_numpy(array, out=request.inputs["image"])
    return request


def rest_call(base: str, body: bytes, expected: np.ndarray, outcome: Outcome) -> None:
    try:
        with httpx.Client(timeout=HANG_S) as client:
            answer = client.post(
                f"{base}/v1/models/{SERVABLE}:predict",
                content=body,
                headers={**KEY, "Content-Type": "application/json"},
            )
        outcome.status = str(answer.status_code)
        if answer.status_code == 200:
            classes = [row["class_id"] for row in answer.json()["predictions"]]
            outcome.correct = classes == expected.tolist()
        else:
            document = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            outcome.correct = isinstance(document, dict) and isinstance(document.get("error"), str)
            outcome.detail = answer.text[:200]
    except httpx.ConnectError:
        outcome.status, outcome.correct = "refused", True
    except httpx.TimeoutException:
        outcome.status = "hang"
    except (httpx.ReadError, httpx.RemoteProtocolError) as error:
        # closed before any byte of an answer (a connection the kernel queued before the listener
        # closed): nothing was processed; a partial answer would be a RemoteProtocolError mid-body
        text = str(error)
        clean = "reset" in text or "without sending a response" in text
        outcome.status, outcome.correct, outcome.detail = ("reset" if clean else "broken"), clean, repr(error)[:200]
    except (httpx.HTTPError, ValueError, KeyError) as error:
        outcome.status, outcome.detail = "broken", repr(error)[:200]
    outcome.ended = time.monotonic()


def grpc_call(target: str, request: Any, expected: np.ndarray, outcome: Outcome) -> None:
    try:
        with grpc.insecure_channel(target) as channel:
            stub = protos.PREDICTION_SERVICE.stub(channel)
            response = stub.Predict(request, timeout=HANG_S, metadata=tuple(KEY.items()))
        outcome.status = "OK"
        outcome.correct = to_numpy(response.outputs["class_id"]).tolist() == expected.tolist()
    except grpc.RpcError as error:
        outcome.status, outcome.detail = error.code().name, (error.details() or "")[:200]
        # UNAVAILABLE: nothing listens; CANCELLED: grpc's answer to a call that reached a server
        # already stopping (never started by it)
        outcome.correct = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            outcome.status = "hang"
    outcome.ended = time.monotonic()


def expected_classes(modelserver: Server, array: np.ndarray) -> np.ndarray:
    with grpc.insecure_channel(modelserver.grpc) as channel:
        response = protos.PREDICTION_SERVICE.stub(channel).Predict(predict_request(array), timeout=120)
    return to_numpy(response.outputs["class_id"])


@dataclass
class Load:
    """Concurrent requests of ``rows`` rows each, half REST half gRPC, and how the size was found."""

    rows: int
    clients: int
    expected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def protocols(self) -> list[str]:
        return ["rest" if index % 2 == 0 else "grpc" for index in range(self.clients)]


def plan(rows_per_s: float, grace: float, min_clients: int) -> Load:
    """Requests that take about WORK_SHARE of ``grace`` together at ``rows_per_s``: at least
    ``min_clients`` of them, each of MIN_ROWS..MAX_ROWS rows, more of them when MAX_ROWS is not enough."""
    total = rows_per_s * grace * WORK_SHARE
    rows = int(min(MAX_ROWS, max(MIN_ROWS, total / min_clients)))
    return Load(rows, min(MAX_CLIENTS, max(min_clients, math.ceil(total / rows))))


def measured_rate(modelserver: Server) -> float:
    """Rows per second of the model server on one 64-row gRPC request (best of 2, after a warm-up)."""
    probe = batch(64)
    expected_classes(modelserver, probe)
    seconds = []
    for _ in range(2):
        started = time.monotonic()
        expected_classes(modelserver, probe)
        seconds.append(time.monotonic() - started)
    return 64 / max(min(seconds), 1e-3)


def launch(server: Server, array: np.ndarray, expected: np.ndarray, load: Load) -> tuple[list[Outcome], list[Any]]:
    body = orjson.dumps({"instances": array.tolist()})
    request = predict_request(array)
    outcomes: list[Outcome] = []
    threads: list[threading.Thread] = []
    for protocol in load.protocols:
        outcome = Outcome(protocol, time.monotonic())
        outcomes.append(outcome)
        if protocol == "rest":
            thread = threading.Thread(target=rest_call, args=(server.rest, body, expected, outcome), daemon=True)
        else:
            thread = threading.Thread(target=grpc_call, args=(server.grpc, request, expected, outcome), daemon=True)
        threads.append(thread)
        thread.start()
    return outcomes, threads


def enough_in_flight(outcomes: list[Outcome]) -> bool:
    """A drain of both protocols needs a request of each in flight."""
    running = {o.protocol for o in outcomes if not o.ended}
    return running == {"rest", "grpc"}


def gateway_has_them(gateway: Server, outcomes: list[Outcome], timeout_s: float = 10.0) -> float:
    """Wait until every unfinished request is in a call to the model server (the gateway's in-flight
    gauge), so that each one was read and decoded before SIGTERM. Returns how long that took."""
    started = time.monotonic()
    pattern = re.compile(rb"^tensorgate_gateway_upstream_in_flight\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = sum(1 for o in outcomes if not o.ended)
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"{gateway.rest}/metrics", timeout=2).content
            if sum(float(v) for v in pattern.findall(text)) >= pending:
                break
        time.sleep(0.02)
    return time.monotonic() - started


def shut_down_under_load(
    server: Server, modelserver: Server, rows_per_s: float, grace: float, min_clients: int, via_gateway: bool
) -> tuple[Phase, Load, float]:
    """Plan the load from ``rows_per_s``, raise it until enough requests are in flight once the server
    has them all, then SIGTERM the server. Returns the rate the load was finally planned from."""
    phase = Phase(server.managed.name, grace)
    tries: list[dict[str, Any]] = []
    for attempt in range(1, TRIES + 1):
        load = plan(rows_per_s, grace, min_clients)
        array = batch(load.rows)
        load.expected = expected_classes(modelserver, array)
        launched = time.monotonic()
        outcomes, threads = launch(server, array, load.expected, load)
        time.sleep(SETTLE_S)  # every request sent (connections open, bodies on their way)
        waited = gateway_has_them(server, outcomes) if via_gateway else 0.0
        running = sum(1 for o in outcomes if not o.ended)
        tries.append(
            {"rows": load.rows, "clients": load.clients, "planned_rows_per_s": round(rows_per_s)}
            | {"waited_s": round(waited, 2), "running": running}
        )
        if enough_in_flight(outcomes) or attempt == TRIES:
            break  # enough, or judged as it is (too light: the check fails)
        for thread in threads:  # too light: let them finish, then plan again from the rate they got
            thread.join(HANG_S + 5)
        served_s = max(o.ended for o in outcomes) - launched
        rows_per_s = max(2 * rows_per_s, load.rows * load.clients / max(served_s, 1e-3))
    load.attempts = tries
    sent_at = phase.sent_at = time.monotonic()
    server.managed.process.send_signal(signal.SIGTERM)
    phase.in_flight = [o for o in outcomes if not o.ended or o.ended > sent_at]
    late_threads: list[threading.Thread] = []
    time.sleep(0.3)  # the signal is handled: listeners closing
    small = batch(1)
    small_expected = load.expected[:0]  # late requests must not be answered; if one is, its classes are checked
    while server.managed.alive() and time.monotonic() - sent_at < grace + 10:
        for protocol in ("rest", "grpc"):
            outcome = Outcome(protocol, time.monotonic())
            phase.late.append(outcome)
            if protocol == "rest":
                args: tuple[Any, ...] = (
                    server.rest,
                    orjson.dumps({"instances": small.tolist()}),
                    small_expected,
                    outcome,
                )
                thread = threading.Thread(target=rest_call, args=args, daemon=True)
            else:
                thread = threading.Thread(
                    target=grpc_call, args=(server.grpc, predict_request(small), small_expected, outcome), daemon=True
                )
            late_threads.append(thread)
            thread.start()
        time.sleep(0.25)
    try:
        phase.exit_code = server.managed.process.wait(max(0.0, grace + 10 - (time.monotonic() - sent_at)))
    except Exception:  # still running: the check fails on exit_code None
        phase.exit_code = None
    phase.exit_s = time.monotonic() - sent_at
    for thread in threads + late_threads:
        thread.join(HANG_S + 5)
    return phase, load, rows_per_s


def judge(result: CheckResult, phase: Phase, load: Load, slack_s: float) -> dict[str, Any]:
    name = phase.target
    protocols = {o.protocol for o in phase.in_flight}
    result.expect(
        len(phase.in_flight) >= 2 and protocols == {"rest", "grpc"},
        f"{name}: only {len(phase.in_flight)} requests ({sorted(protocols)}) were in flight at SIGTERM, with "
        f"{load.rows} rows each (tries: {load.attempts}); the load could not be made heavy enough to test a drain",
    )
    answered = [o for o in phase.in_flight if o.status in ("200", "OK") and o.correct]
    for outcome in phase.in_flight:
        if not (outcome.status in ("200", "OK") and outcome.correct):
            result.fail(
                f"{name}: a {outcome.protocol} request in flight at SIGTERM ended {outcome.status}"
                f"{' with a wrong answer' if outcome.status in ('200', 'OK') else ''} {outcome.detail}".strip()
            )
    refused = [o for o in phase.late if o.status in REFUSALS and o.correct]
    served = [o for o in phase.late if o.status in ("200", "OK")]
    for outcome in phase.late:
        if outcome not in refused and outcome not in served:
            result.fail(f"{name}: a {outcome.protocol} request after SIGTERM ended {outcome.status} {outcome.detail}")
    # A server cannot refuse before it has handled the signal (its event loop may be busy decoding the
    # in-flight bodies), and REST and gRPC are separate listeners that close one after the other: per
    # protocol, requests that started before its first refusal may be served. Once one request of a
    # protocol is refused, every later one must be, and refusing must begin promptly.
    refusing_after: dict[str, float] = {}
    served_after: list[Outcome] = []
    for protocol in sorted({o.protocol for o in phase.late}):
        first = min((o.started for o in refused if o.protocol == protocol), default=float("inf"))
        refusing_after[protocol] = first - phase.sent_at
        served_after += [o for o in served if o.protocol == protocol and o.started >= first]
        result.expect(
            refusing_after[protocol] <= STOP_ACCEPTING_S,
            f"{name}: refusing new {protocol} requests began {refusing_after[protocol]:.2f} s after SIGTERM "
            f"(limit {STOP_ACCEPTING_S:g} s)",
        )
    result.expect(
        not served_after,
        f"{name}: {len(served_after)} requests started after the first refusal of their protocol were served",
    )
    result.expect(phase.exit_code == 0, f"{name}: exit status {phase.exit_code} after SIGTERM (0 expected)")
    result.expect(
        phase.exit_s <= phase.grace_s + slack_s,
        f"{name}: exited {phase.exit_s:.1f} s after SIGTERM, grace {phase.grace_s:g} s (+{slack_s:g} s slack)",
    )
    durations = [o.ended - o.started for o in phase.in_flight if o.ended]
    statuses: dict[str, int] = {}
    for outcome in phase.late:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return {
        f"{name}_rows_per_request": load.rows,
        f"{name}_clients": f"{load.protocols.count('rest')} REST + {load.protocols.count('grpc')} gRPC",
        f"{name}_sizing_tries": load.attempts,
        f"{name}_in_flight": len(phase.in_flight),
        f"{name}_completed": len(answered),
        f"{name}_late": len(phase.late),
        f"{name}_late_refused": len(refused),
        f"{name}_late_served_before_refusing": len(served) - len(served_after),
        f"{name}_refusing_after_s": {p: round(v, 2) for p, v in refusing_after.items()},
        f"{name}_exit_s": round(phase.exit_s, 2),
        f"{name}_grace_s": phase.grace_s,
        f"{name}_exit_code": phase.exit_code,
        f"{name}_longest_in_flight_s": round(max(durations, default=0.0), 2),
        f"{name}_late_statuses": statuses,
        f"{name}_in_flight_detail": [
            f"{o.protocol} {o.status} sent {o.started - phase.sent_at:+.2f} s, ended {o.ended - phase.sent_at:+.2f} s"
            for o in phase.in_flight
        ],
    }


def run(ctx: Context) -> CheckResult:
    result = CheckResult("shutdown", what="SIGTERM under REST+gRPC load: gateway, then the model server")
    with timed(result):
        clients, grace = (12, 10.0) if ctx.quick else (16, 10.0)  # the fewest requests in flight
        repo = ctx.model_repo("shutdown")
        modelserver = ctx.start_modelserver(repo)
        gateway = ctx.start_gateway(
            repo,
            [modelserver.grpc],
            overrides={
                "timeouts": {"shutdown_grace_s": grace},
                "batching": {"max_rows": 1},
                # every request its own upstream call, none waiting for a slot: the in-flight gauge sees all
                "upstreams": {"default": {"targets": [modelserver.grpc], "max_concurrency": 4 * MAX_CLIENTS}},
            },
        )
        rows_per_s = measured_rate(modelserver)
        figures: dict[str, Any] = {"measured_rows_per_s": round(rows_per_s)}
        phase, load, rows_per_s = shut_down_under_load(gateway, modelserver, rows_per_s, grace, clients, True)
        figures |= judge(result, phase, load, slack_s=2.0)
        result.expect(modelserver.managed.alive(), "the model server died while the gateway shut down")
        # the model server drains both fronts for serving.modelserver.app.SHUTDOWN_GRACE_S; its load is
        # planned from the rate the gateway's load ended with
        phase, load, _ = shut_down_under_load(modelserver, modelserver, rows_per_s, SHUTDOWN_GRACE_S, clients, False)
        figures |= judge(result, phase, load, slack_s=2.0)
        result.amount = (
            f"2 servers: {figures['gateway_clients']} / {figures['modelserver_clients']} in-flight requests of "
            f"{figures['gateway_rows_per_request']} / {figures['modelserver_rows_per_request']} rows (sized from "
            f"{figures['measured_rows_per_s']} rows/s measured), SIGTERM each"
        )
        result.figures = figures
    return result
