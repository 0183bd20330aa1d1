"""Where tracing's cost goes, per request: the gateway's app driven in this process (no HTTP server, no
client in the way), CPU time per request with tracing off and at each sampling ratio.

    python -m loadtest.tracing_cost [--requests 20000] [--block 250] [--rounds 3]
        [--settings off,0,0.1,1] [--protocols rest,grpc] [--loop asyncio|uvloop] [--task-each]
        [--profile DIR --profile-setting 0.1]

Each round and protocol runs a fresh process that builds the gateway's app (benchmark settings, as
loadtest.gateway_cpu, tracing configured) in front of the fake upstream and calls its REST front as an
ASGI app, or its gRPC Predict handler with a stand-in servicer context, from ``--concurrency`` tasks in
a closed loop, so the coalescer batches as under load; upstream calls are real gRPC calls on
loopback, spans go to ``python -m loadtest.otlp_receiver``. The settings take turns in blocks of
``--block`` requests (``off`` takes tracing away between blocks, a ratio sets it), so whatever else the
machine does falls on all of them alike. Reported per setting, in CPU microseconds per request: the
event loop's thread (and the collector's part of it), the span export thread and the trace exporter
process (both measured per span over the run, times the setting's spans per request). ``0`` is every
hook with nothing sampled; ``0.1q`` (any ratio with a ``q``) records spans as ``0.1`` does but drops
them instead of queueing them for export (is it the queue, or the recording?; its export figures
are what those spans would have cost, so compare its event loop only); ``0.1b`` leaves the
coalesced batches and their upstream calls untraced (is it the batches?). Spans are counted by a
wrapper (about 0.1 us a span on the event loop), and upstream calls too: the requests each call answered
show whether a setting changed how the coalescer batched (it would change the CPU per request).

A diagnostic: it leaves out uvicorn, the sockets and the client, and it is not a throughput figure
(``loadtest.tracing_overhead`` is). ``--profile`` writes a cProfile of one setting's blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from loadtest import payloads
from loadtest.gateway_cpu import SERVABLE, gateway_config
from loadtest.procs import Managed, free_port, stop_all
from loadtest.targets import API_KEY

_PATH = f"/v1/models/{SERVABLE}:predict"


class _Context:
    """What the gRPC front's handler asks of a servicer context."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float:
        return 30.0

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


async def _lifespan(app: Any) -> tuple[asyncio.Queue[Any], asyncio.Task[None]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"gateway did not start: {message}")
    return inbox, task


async def _drive(
    app: Any, handler: Any, protocol: str, body: bytes, requests: int, concurrency: int, task_each: bool = False
) -> None:
    headers = [
        (b"host", b"gateway"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-api-key", API_KEY.encode()),
    ]
    grpc_request = payloads_proto(body) if protocol == "grpc" else None
    context = _Context((("x-api-key", API_KEY),))
    left = requests

    async def rest_one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": _PATH,
            "raw_path": _PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        status = 0

        async def receive() -> Any:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"status {status}")

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if protocol == "rest":
                await (asyncio.create_task(rest_one()) if task_each else rest_one())
            else:
                await handler(grpc_request, context)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def payloads_proto(body: bytes) -> Any:
    from serving import protos

    return protos.PredictRequest.FromString(body)


def _child(args: argparse.Namespace) -> int:
    """Every setting in this process, in blocks of ``--block`` requests taken in rotation (tracing is
    configured once; ``off`` takes it away between blocks, a ratio sets it), so that whatever else the
    machine does falls on every setting alike. Prints one JSON line."""
    from serving import tracing
    from serving.gateway.config import load_settings
    from serving.gateway.grpc_front import GrpcFront
    from serving.gateway.main import create_app

    config = gateway_config(0, 0, args.upstream, 1)
    config.pop("grpc_port")
    config["log_level"] = "warning"
    config["tracing"] = {"otlp_endpoint": args.endpoint, "sample_ratio": 0.0}
    settings = load_settings(**config)
    app = create_app(settings)
    active = tracing._active
    assert active is not None
    exporter = active.exporter
    protocol = args.protocol
    body = payloads.build("instances" if protocol == "rest" else "grpc", SERVABLE, 1, count=1)[0].body
    names = args.settings.split(",")

    # diagnostic variants: "0.1q" records spans but drops them instead of queueing them; "0.1b" leaves
    # coalesced batches (and their upstream calls) untraced
    keep, batches = [True], [True]
    span_from = tracing.span_from

    def batch_span(name: str, parents: Any, attributes: Any = None) -> Any:
        return span_from(name, parents if batches[0] else (), attributes)

    # (the coalescer looks it up per batch)
    tracing.span_from = batch_span  # type: ignore[assignment]

    def select(name: str) -> None:
        if name == "off":
            tracing._active = None
        else:
            tracing._active = active
            keep[0], batches[0] = "q" not in name, "b" not in name
            active.ratio = float(name.rstrip("qb"))

    recorded = [0]  # spans recorded so far (a counting wrapper: about 0.1 us a span)
    add = active.add

    def counting_add(record: Any) -> None:
        recorded[0] += 1
        if keep[0]:
            add(record)

    active.add = counting_add  # type: ignore[method-assign]

    def spans_so_far() -> int:
        return recorded[0]

    # upstream calls made (a coalesced batch is one): tracing must not change how requests batch
    from serving.gateway import upstream

    calls = [0]
    call = upstream.Upstream.call

    async def counting_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await call(self, *args, **kwargs)

    upstream.Upstream.call = counting_call  # type: ignore[method-assign]

    async def main() -> dict[str, Any]:
        inbox, lifespan = await _lifespan(app)
        handler = None
        if protocol == "grpc":
            front = GrpcFront(app.fastapi.state.gateway, settings)
            handler = front._guarded("predict", "/tensorflow.serving.PredictionService/Predict", front._predict)
        for name in names:
            select(name)
            await _drive(app, handler, protocol, body, args.warmup // len(names), args.concurrency, args.task_each)
        agent = psutil.Process(exporter._agent.pid) if exporter._agent else None
        export_thread = exporter._thread.native_id
        me = psutil.Process()

        def thread_cpu(native_id: Any) -> float:
            for thread in me.threads():
                if thread.id == native_id:
                    return float(thread.user_time + thread.system_time)
            return 0.0

        totals = {name: {"cpu": 0.0, "loop": 0.0, "gc": 0.0, "spans": 0, "calls": 0, "requests": 0} for name in names}
        gc_spent = [0.0, 0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_spent[1] = time.thread_time()
            else:
                gc_spent[0] += time.thread_time() - gc_spent[1]

        gc.callbacks.append(on_gc)
        agent_before = sum(agent.cpu_times()[:2]) if agent else 0.0
        thread_before, handed_before = thread_cpu(export_thread), exporter.handed
        profile = cProfile.Profile() if args.profile else None
        blocks = max(1, args.requests // args.block)
        for index in range(blocks):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                select(name)
                item = totals[name]
                spans, spent, made = spans_so_far(), gc_spent[0], calls[0]
                cpu, loop = time.process_time(), time.thread_time()
                if profile is not None and name == args.profile_setting:
                    profile.enable()
                await _drive(app, handler, protocol, body, args.block, args.concurrency, args.task_each)
                if profile is not None:
                    profile.disable()
                item["cpu"] += time.process_time() - cpu
                item["loop"] += time.thread_time() - loop
                item["gc"] += gc_spent[0] - spent
                item["spans"] += spans_so_far() - spans
                item["calls"] += calls[0] - made
                item["requests"] += args.block
        gc.callbacks.remove(on_gc)
        select(names[-1] if names[-1] != "off" else "0")
        await asyncio.sleep(1.0)  # the last batch handed over is sent (the agent's share is per span handed)
        spans = exporter.handed - handed_before
        agent_cpu = sum(agent.cpu_times()[:2]) - agent_before if agent else 0.0
        thread_cpu_s = thread_cpu(export_thread) - thread_before
        if profile is not None:
            profile.dump_stats(str(Path(args.profile) / f"{protocol}-{args.profile_setting}.prof"))
        tracing._active = active
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        per_span = {
            "export_thread_us_per_span": thread_cpu_s / max(spans, 1) * 1e6,
            "exporter_process_us_per_span": agent_cpu / max(spans, 1) * 1e6,
        }
        result: dict[str, Any] = {"per_span": per_span}
        for name, item in totals.items():
            n = item["requests"]
            spans_per_request = item["spans"] / n
            result[name] = {
                "event_loop_us": item["loop"] / n * 1e6,
                "gc_us": item["gc"] / n * 1e6,
                "spans_per_request": spans_per_request,
                "requests_per_upstream_call": n / max(item["calls"], 1),
                "export_thread_us": spans_per_request * per_span["export_thread_us_per_span"],
                "exporter_process_us": spans_per_request * per_span["exporter_process_us_per_span"],
            }
        return result

    if args.loop == "uvloop":  # as the gateway runs by default (server.event_loop: auto)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(main())), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.tracing_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--settings", default="off,0,0.1,1")
    parser.add_argument("--protocols", default="rest,grpc")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--task-each", action="store_true", help="each REST request in a task of its own, as uvicorn")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop (asyncio)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--block", type=int, default=250, help="requests per block (250)")
    parser.add_argument("--profile-setting", default="0.1", help="the setting --profile profiles (0.1)")
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    work = Path(tempfile.mkdtemp(prefix="tracing-cost-"))
    upstream_port, receiver_port = free_port(), free_port()
    fake = [sys.executable, "-m", "tests.integration.gateway.fake_upstream", "--port", str(upstream_port)]
    Managed("fake upstream", [*fake, "--models", SERVABLE], work / "fake.log")
    stats = work / "receiver.json"
    receiver = [sys.executable, "-m", "loadtest.otlp_receiver", "--port", str(receiver_port), "--stats", str(stats)]
    Managed("OTLP receiver", receiver, work / "receiver.log").wait_ready(stats.exists, 30)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        time.sleep(1.0)
        for index in range(args.rounds):
            for protocol in args.protocols.split(","):
                command = [sys.executable, "-m", "loadtest.tracing_cost", "--child", "--settings", args.settings]
                command += ["--protocol", protocol, "--upstream", f"127.0.0.1:{upstream_port}"]
                command += ["--endpoint", f"127.0.0.1:{receiver_port}", "--requests", str(args.requests)]
                command += ["--warmup", str(args.warmup), "--concurrency", str(args.concurrency)]
                command += ["--block", str(args.block), "--loop", args.loop] + (
                    ["--task-each"] if args.task_each else []
                )
                if args.profile:
                    command += ["--profile", str(args.profile), "--profile-setting", args.profile_setting]
                out = subprocess.run(command, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(out.stdout, out.stderr, file=sys.stderr)
                    return 1
                measured = json.loads(out.stdout.strip().splitlines()[-1])
                per_span = measured.pop("per_span")
                print(
                    f"round {index + 1} {protocol}: export thread {per_span['export_thread_us_per_span']:.1f} us "
                    f"and exporter process {per_span['exporter_process_us_per_span']:.1f} us per span",
                    flush=True,
                )
                for setting, item in measured.items():
                    item["total_us"] = item["event_loop_us"] + item["export_thread_us"] + item["exporter_process_us"]
                    results.setdefault(f"{protocol} {setting}", []).append(item)
                    print(
                        f"round {index + 1} {protocol:<4} {setting:<4}: event loop {item['event_loop_us']:6.1f} us "
                        f"(gc {item['gc_us']:4.1f}), export thread {item['export_thread_us']:4.1f}, "
                        f"exporter process {item['exporter_process_us']:4.1f}; "
                        f"total {item['total_us']:6.1f} us per request; "
                        f"{item['spans_per_request']:.3f} spans per request, "
                        f"{item['requests_per_upstream_call']:.1f} requests per upstream call",
                        flush=True,
                    )
    finally:
        stop_all()
    print("medians over rounds (us per request):")
    for name, items in results.items():
        keys = (
            "event_loop_us",
            "gc_us",
            "export_thread_us",
            "exporter_process_us",
            "total_us",
            "requests_per_upstream_call",
        )
        medians = {key: round(statistics.median(i[key] for i in items), 2) for key in keys}
        print(f"  {name}: {json.dumps(medians)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
