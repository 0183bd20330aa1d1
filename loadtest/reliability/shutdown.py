"""Graceful shutdown under load: SIGTERM while REST and gRPC requests are in flight.

For the gateway (in front of a real model server) and then for the model server itself: start
concurrent large-batch requests (REST and gRPC, each on its own connection, slow enough to be in
flight), send SIGTERM once they are all sent, then keep starting new requests until the process is
gone. Pass: every request in flight at SIGTERM answers 200 / OK with the right classes for every row;
new requests are refused cleanly (connection refused, 503 with ``{"error"}``, or gRPC UNAVAILABLE)
from at most 2 s after SIGTERM and without exception after the first refusal (before it the server has
not handled the signal yet), never a hang or a wrong answer; the process exits with status 0 within
the grace period (gateway: ``timeouts.shutdown_grace_s``).
"""

from __future__ import annotations

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


def shut_down_under_load(server: Server, expected: np.ndarray, array: np.ndarray, clients: int, grace: float) -> Phase:
    phase = Phase(server.managed.name, grace)
    body = orjson.dumps({"instances": array.tolist()})
    request = predict_request(array)
    threads: list[threading.Thread] = []
    for index in range(clients):
        outcome = Outcome("rest" if index % 2 == 0 else "grpc", time.monotonic())
        phase.in_flight.append(outcome)
        if outcome.protocol == "rest":
            thread = threading.Thread(target=rest_call, args=(server.rest, body, expected, outcome), daemon=True)
        else:
            thread = threading.Thread(target=grpc_call, args=(server.grpc, request, expected, outcome), daemon=True)
        threads.append(thread)
        thread.start()
    time.sleep(SETTLE_S)  # every request sent (connections open, bodies on their way), none answered yet
    sent_at = phase.sent_at = time.monotonic()
    server.managed.process.send_signal(signal.SIGTERM)
    phase.in_flight = [o for o in phase.in_flight if not o.ended or o.ended > sent_at]
    late_threads: list[threading.Thread] = []
    time.sleep(0.3)  # the signal is handled: listeners closing
    small = batch(1)
    small_expected = expected[:0]  # late requests must not be answered; if one is, its classes are checked
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
    return phase


def judge(result: CheckResult, phase: Phase, slack_s: float) -> dict[str, Any]:
    name = phase.target
    protocols = {o.protocol for o in phase.in_flight}
    result.expect(
        len(phase.in_flight) >= 2 and protocols == {"rest", "grpc"},
        f"{name}: only {len(phase.in_flight)} requests ({sorted(protocols)}) were in flight at SIGTERM: "
        "the load was too light to test a drain",
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
    }


def run(ctx: Context) -> CheckResult:
    result = CheckResult("shutdown", what="SIGTERM under REST+gRPC load: gateway, then the model server")
    with timed(result):
        rows, clients, grace = (256, 12, 10.0) if ctx.quick else (256, 16, 10.0)
        repo = ctx.model_repo("shutdown")
        modelserver = ctx.start_modelserver(repo)
        gateway = ctx.start_gateway(
            repo,
            [modelserver.grpc],
            overrides={"timeouts": {"shutdown_grace_s": grace}, "batching": {"max_rows": 1}},
        )
        array = batch(rows)
        expected = expected_classes(modelserver, array)
        figures: dict[str, Any] = {"rows_per_request": rows, "clients": clients}
        figures |= judge(result, shut_down_under_load(gateway, expected, array, clients, grace), slack_s=2.0)
        result.expect(modelserver.managed.alive(), "the model server died while the gateway shut down")
        # the model server drains both fronts for serving.modelserver.app.SHUTDOWN_GRACE_S
        phase = shut_down_under_load(modelserver, expected, array, clients, SHUTDOWN_GRACE_S)
        figures |= judge(result, phase, slack_s=2.0)
        result.amount = f"2 servers x {clients} in-flight requests of {rows} rows (REST+gRPC), SIGTERM each"
        result.figures = figures
    return result
