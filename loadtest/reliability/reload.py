"""Hot reload under load: new model versions appear in the base path while Locust drives the gateway.

(a) Version 2 appears (written beside the base path's versions in a hidden directory, then renamed to
``2``, the way a deployment should publish it): no request fails, and the answers move from version 1
to version 2 (each event's model version; the classes of every 200 match what that version itself
answers). Version 2 is a different trained model (the repository's ``lstm``, same signature as
``cnn``), so an answer from the wrong version shows in its classes, not only in its version header.
(b) A corrupt version 3 appears (a garbage ``saved_model.pb``, published the same way): the model
server reports it failed with an error message (GetModelStatus, REST ``/v1/models/cnn``, also through
the gateway), and version 2 keeps serving with no failed request, as TF Serving does when the newest
version fails to load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.reliability.common import API_KEY, SERVABLE, CheckResult, Context, Server, timed
from loadtest.reliability.load import BackgroundLoad, Event, describe, reference_classes, status_counts, wrong_answers

NEW_MODEL = "lstm"  # published as version 2 of cnn: same signature, different answers


@dataclass
class Sizes:
    users: int  # per user class (REST and gRPC)
    rate: float  # requests per second in all
    before_s: float  # load on version 1 before version 2 appears
    settle_s: float  # load that must be all version 2 / all success after each change


QUICK = Sizes(users=2, rate=100.0, before_s=1.0, settle_s=2.0)
FULL = Sizes(users=4, rate=200.0, before_s=5.0, settle_s=10.0)


def publish(base: Path, version: int, fill: Any) -> float:
    """Write a version the safe way: ``fill(tmp)`` into a hidden directory beside the versions
    (ignored by the model server, same file system), then rename it to ``<version>``. The rename's time."""
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-{version}-", dir=base))
    fill(staging)
    published = time.time()
    os.rename(staging, base / str(version))
    return published


def copy_from(source: Path) -> Any:
    def fill(staging: Path) -> None:
        shutil.copytree(source, staging, dirs_exist_ok=True)

    return fill


def corrupt(staging: Path) -> None:
    (staging / "saved_model.pb").write_bytes(b"\x08\x01this is not a SavedModel\xff\xfe" * 64)
    (staging / "variables").mkdir()


def repair(base: Path, version: int, fill: Any) -> float:
    """Replace a published version: move it aside (hidden, then deleted), publish the new one."""
    aside = Path(tempfile.mkdtemp(prefix=f".removed-{version}-", dir=base))
    os.rename(base / str(version), aside / "old")
    shutil.rmtree(aside)
    return publish(base, version, fill)


def newest(base: Path) -> Path:
    return max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def model_status(server: Server, headers: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Version -> its status entry (state, status.error_code, status.error_message) from REST."""
    answer = httpx.get(f"{server.rest}/v1/models/{SERVABLE}", headers=headers or {}, timeout=5).json()
    return {str(v.get("version")): v for v in answer.get("model_version_status", [])}


def wait_state(server: Server, version: str, state: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = model_status(server).get(version)
        if entry is not None and entry.get("state") == state:
            return entry
        time.sleep(0.2)
    return None


def all_from(version: str, since: float, seconds: float, per_protocol: int = 10) -> Any:
    """A wait condition: ``seconds`` of events after ``since``, the last ``seconds`` all from ``version``."""

    def done(events: list[Event]) -> bool:
        now = time.time()
        window = [e for e in events if e.t >= now - seconds]
        counts = {p: sum(e.protocol == p for e in window) for p in ("rest", "grpc")}
        enough = now - since >= seconds and min(counts.values()) >= per_protocol
        return enough and all(e.version == version for e in window)

    return done


def run(ctx: Context) -> CheckResult:
    sizes = QUICK if ctx.quick else FULL
    result = CheckResult(
        "reload",
        what=(
            "Locust (REST instances + gRPC Predict) through the gateway while version 2 (a different model) "
            "and then a corrupt version 3 are published into cnn's base path (hidden dir + rename)"
        ),
    )
    figures = result.figures
    with timed(result):
        repo = ctx.model_repo("reload")
        base = repo / SERVABLE
        source = ctx.source_repo / NEW_MODEL
        source = newest(source) if source.is_dir() else newest(ctx.source_repo / SERVABLE)
        modelserver = ctx.start_modelserver(repo)
        gateway = ctx.start_gateway(repo, [modelserver.grpc])
        references = {"1": reference_classes(modelserver)}
        with BackgroundLoad(ctx, gateway, "reload", users=sizes.users, target_rps=sizes.rate) as load:
            load.wait_for_events(20)
            time.sleep(sizes.before_s)
            renamed = publish(base, 2, copy_from(source))
            if wait_state(modelserver, "2", "AVAILABLE", timeout=120) is None:
                result.fail("(a) version 2 did not become AVAILABLE within 120 s")
            available = time.time()
            figures["a_rename_to_v2_available_s"] = round(available - renamed, 2)
            try:
                load.wait_until(all_from("2", available, sizes.settle_s), since=available, timeout=30)
            except TimeoutError:
                result.fail(f"(a) answers were not all from version 2 for {sizes.settle_s:g} s within 30 s")
            references["2"] = reference_classes(modelserver, 2)  # version 2 itself, while it serves
            corrupted = publish(base, 3, corrupt)
            failed_load = wait_state(modelserver, "3", "END", timeout=60)
            reported = time.time()
            figures["b_rename_to_v3_reported_s"] = round(reported - corrupted, 2)
            judge_report(result, modelserver, gateway, failed_load)
            time.sleep(sizes.settle_s)
            repaired = repair(base, 3, copy_from(newest(ctx.source_repo / SERVABLE)))
            if wait_state(modelserver, "3", "AVAILABLE", timeout=30) is None:
                result.fail("(c) a good version 3 published in place of the corrupt one was not loaded within 30 s")
            else:
                figures["c_rename_to_v3_available_s"] = round(time.time() - repaired, 2)
                try:
                    load.wait_until(all_from("3", time.time(), sizes.settle_s), timeout=30)
                except TimeoutError:
                    result.fail(f"(c) answers were not all from version 3 for {sizes.settle_s:g} s within 30 s")
                references["3"] = reference_classes(modelserver, 3)
        events = load.events()
        judge(result, events, references, renamed, corrupted, repaired)
        result.amount = f"{len(events)} requests, versions 1 -> 2 -> corrupt 3 -> good 3"
    return result


def judge_report(result: CheckResult, modelserver: Server, gateway: Server, failed_load: dict[str, Any] | None) -> None:
    """Version 3 is END with an error message, at the model server and through the gateway."""
    figures = result.figures
    if not result.expect(failed_load is not None, "(b) the corrupt version 3 was never reported END"):
        return
    assert failed_load is not None
    message = str(failed_load.get("status", {}).get("error_message", ""))
    figures["b_v3_error"] = f"{failed_load.get('status', {}).get('error_code', '?')}: {message[:120]}"
    result.expect(bool(message), f"(b) version 3 is END without an error message: {failed_load}")
    states = {v: entry.get("state") for v, entry in model_status(modelserver).items()}
    figures["b_modelserver_states"] = ", ".join(f"v{v} {s}" for v, s in sorted(states.items()))
    result.expect(states.get("2") == "AVAILABLE", f"(b) version 2 is not AVAILABLE beside the failed 3: {states}")
    through = model_status(gateway, {"x-api-key": API_KEY}).get("3", {})
    result.expect(
        through.get("state") == "END" and bool(through.get("status", {}).get("error_message")),
        f"(b) the gateway's /v1/models/{SERVABLE} does not report version 3's failure: {through}",
    )
    # the gateway's own listing follows its GetModelStatus poll (timeouts.status_poll_s, 2 s by default)
    deadline, listed = time.monotonic() + 10, None
    while time.monotonic() < deadline and listed is None:
        listing = httpx.get(f"{gateway.rest}/v1/models", headers={"x-api-key": API_KEY}, timeout=5).json()
        models: list[dict[str, Any]] = listing.get("models", [])
        entry = next((m for m in models if m.get("name") == SERVABLE), {})
        listed = next((v for v in entry.get("versions", []) if str(v.get("version")) == "3"), None)
        time.sleep(0.2)
    figures["b_gateway_listing_v3"] = listed
    listed_end = listed is not None and listed.get("state") == "END"
    result.expect(listed_end, f"(b) the gateway's /v1/models does not list version 3 as END: {listed}")


def judge(
    result: CheckResult,
    events: list[Event],
    references: dict[str, list[int]],
    renamed: float,
    corrupted: float,
    repaired: float,
) -> None:
    figures = result.figures
    failed = [e for e in events if not e.ok]
    figures["requests"] = len(events)
    figures["outcomes"] = status_counts(events)
    figures["failed"] = len(failed)
    for event in failed[:5]:
        result.fail(f"failed request: {describe(event)}")
    wrong = wrong_answers(events, references)
    figures["wrong_or_empty_200"] = len(wrong)
    for event in wrong[:5]:
        result.fail(f"a 200 with a wrong or empty answer: {describe(event)}")
    versions: dict[str, int] = {}
    for event in events:
        versions[event.version or "-"] = versions.get(event.version or "-", 0) + 1
    figures["answers_per_version"] = dict(sorted(versions.items()))
    last_v1 = max((e.t for e in events if e.version == "1"), default=None)
    first_v2 = min((e.t for e in events if e.version == "2"), default=None)
    result.expect(last_v1 is not None, "(a) no answer came from version 1 before the reload")
    if not result.expect(first_v2 is not None, "(a) no answer came from version 2"):
        return
    assert first_v2 is not None
    figures["a_rename_to_first_v2_answer_s"] = round(first_v2 - renamed, 2)
    if last_v1 is not None:
        figures["a_rename_to_all_v2_s"] = round(max(0.0, last_v1 - renamed), 2)
    after = [e for e in events if e.start >= (last_v1 or renamed) and e.t < repaired]
    stragglers = [e for e in after if e.version != "2"]
    for event in stragglers[:3]:
        result.fail(f"(a) an answer not from version 2 after the switch: {describe(event)}")
    during_b = [e for e in events if corrupted <= e.t and e.start < repaired]
    figures["b_requests_after_corrupt_v3"] = len(during_b)
    result.expect(len(during_b) > 0, "(b) no request ran after the corrupt version appeared")
    for event in [e for e in during_b if e.version != "2"][:3]:
        result.fail(f"(b) an answer not from version 2 after the corrupt version 3 appeared: {describe(event)}")
    last_v2 = max((e.t for e in events if e.version == "2"), default=None)
    first_v3 = min((e.t for e in events if e.version == "3"), default=None)
    if first_v3 is None or last_v2 is None:
        return  # (c) failed above: the good version 3 never answered
    figures["c_rename_to_first_v3_answer_s"] = round(first_v3 - repaired, 2)
    figures["c_rename_to_all_v3_s"] = round(max(0.0, last_v2 - repaired), 2)
    for event in [e for e in events if e.start >= last_v2 and e.version != "3"][:3]:
        result.fail(f"(c) an answer not from version 3 after the switch: {describe(event)}")
