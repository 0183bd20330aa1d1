"""What tracing costs at peak: the gateway's throughput and CPU per request with tracing off, and on at
a sampling ratio (10% by default), measured alternately in one run.

    python -m loadtest.tracing_overhead [--requests 10000] [--pairs 5] [--settings off,0.1]
        [--connections 32] [--protocols rest,grpc] [--out FILE]

The gateway runs with the benchmark's settings (loadtest.gateway_cpu: API keys, access log, metrics,
coalescing) in front of the fake upstream (no model in the way, so the gateway is the bottleneck and
its peak is what tracing could lower). ``--settings`` lists what each round measures, in rotating
order, each with a fresh gateway: ``off``; a ratio (``0.1``: spans exported over OTLP/gRPC to
``python -m loadtest.otlp_receiver``, a process of its own at lower priority that parses and counts
them, as a collector on another machine would take them off this one); ``R:in-process`` (the receiver
inside this process, turning every span into Python objects next to the load generator: how the
benchmark ran until 2026-12-02, kept to show what that cost). Each gateway gets ``--warmup`` requests
per protocol first (enough for a first export, so one-time costs stay out of the figure), then
``--requests`` single-image Predicts over ``--connections`` keep-alive connections (closed loop).

Reported per setting and protocol: throughput and gateway CPU per request (all threads, and the event
loop's thread alone), requests per upstream call (the coalescer's batches), spans received and spans
the gateway dropped; per ratio, the median over rounds of on/off; the goal is at most 5% less
throughput. Use a quiet machine (``/work/bin/tg-timed`` here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from loadtest import payloads
from loadtest.gateway_cpu import SERVABLE, GrpcClient, RestClient, _cpu_name, cpu_seconds, gateway_config
from loadtest.otlp_receiver import Receiver
from loadtest.procs import Managed, free_port, stop_all, tail

GOAL = 0.05  # at most 5% of peak throughput
RECEIVER_NICE = 10
_COALESCED = "tensorgate_gateway_coalesced_requests"


class Setting:
    """``off``, ``R`` (ratio R, receiver in its own process) or ``R:in-process``."""

    def __init__(self, text: str) -> None:
        self.name = text
        ratio, _, where = text.partition(":")
        if where not in ("", "in-process"):
            raise argparse.ArgumentTypeError(f"{text!r}: the receiver is in its own process or ':in-process'")
        self.in_process = where == "in-process"
        try:
            self.ratio = None if ratio == "off" else float(ratio)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither 'off' nor a ratio within 0..1") from None
        if self.ratio is not None and not 0.0 <= self.ratio <= 1.0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a ratio within 0..1")


def _settings(text: str) -> list[Setting]:
    settings = [Setting(item.strip()) for item in text.split(",") if item.strip()]
    if sum(setting.ratio is None for setting in settings) != 1 or len(settings) < 2:
        raise argparse.ArgumentTypeError("--settings needs 'off' once and at least one ratio")
    return settings


class Receivers:
    """The OTLP receivers of a run: one in its own process (counting), one in this process (decoding)."""

    def __init__(self, work: Path, settings: list[Setting]) -> None:
        self.stats = work / "receiver.json"
        self.process: Managed | None = None
        self.local: Receiver | None = None
        if any(s.ratio is not None and not s.in_process for s in settings):
            port = free_port()
            command = [sys.executable, "-m", "loadtest.otlp_receiver", "--port", str(port)]
            command += ["--stats", str(self.stats), "--nice", str(RECEIVER_NICE)]
            self.process = Managed("OTLP receiver", command, work / "receiver.log")
            self.process.wait_ready(self.stats.exists, 30)
            self.process_endpoint = f"127.0.0.1:{port}"
        if any(s.in_process for s in settings):
            self.local = Receiver().start()

    def endpoint(self, setting: Setting) -> str:
        return self.local.endpoint if setting.in_process and self.local else self.process_endpoint

    def received(self, setting: Setting) -> int:
        if setting.in_process:
            return len(self.local.spans()) if self.local else 0
        return int(json.loads(self.stats.read_text())["spans"]) if self.process else 0

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


def _coalesced(url: str) -> tuple[float, float]:
    """(upstream calls, requests they answered) so far, from the gateway's /metrics."""
    calls = answered = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(_COALESCED + "_count"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith(_COALESCED + "_sum"):
            answered += float(line.rsplit(" ", 1)[1])
    return calls, answered


def _loop_cpu(process: psutil.Process) -> float:
    """CPU seconds of the process's main thread (the event loop's)."""
    for thread in process.threads():
        if thread.id == process.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def _measure(client: Any, gateway: psutil.Process, url: str, requests: int, warmup: int) -> dict[str, Any]:
    failures = asyncio.run(client.run(warmup))
    if failures:
        raise RuntimeError(f"warm-up failed: {failures[0]}")
    calls_before, answered_before = _coalesced(url)
    cpu_before, loop_before, started = cpu_seconds(gateway), _loop_cpu(gateway), time.perf_counter()
    failures = asyncio.run(client.run(requests))
    elapsed = time.perf_counter() - started
    cpu, loop = cpu_seconds(gateway) - cpu_before, _loop_cpu(gateway) - loop_before
    calls, answered = _coalesced(url)
    if failures:
        raise RuntimeError(f"{len(failures)} of {requests} requests failed, e.g. {failures[0]}")
    return {
        "requests_per_s": requests / elapsed,
        "us_per_request": cpu / requests * 1e6,
        "us_per_request_event_loop": loop / requests * 1e6,
        "requests_per_upstream_call": (answered - answered_before) / max(calls - calls_before, 1.0),
        "requests": requests,
    }


def _run_gateway(
    work: Path, upstream: str, tracing: dict[str, Any] | None, args: argparse.Namespace, bodies: dict[str, bytes]
) -> dict[str, Any]:
    port, grpc_port = free_port(), free_port()
    config = gateway_config(port, grpc_port, upstream, 1)
    if tracing is not None:
        config["tracing"] = tracing
    path = work / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = work / f"gw-{port}.log"
    gateway = Managed("gateway", [sys.executable, "-m", "serving.gateway", "--config", str(path)], log)
    try:
        url = f"http://127.0.0.1:{port}"
        gateway.wait_ready(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 60)
        results: dict[str, Any] = {}
        for protocol in args.protocols.split(","):
            if protocol == "rest":
                client: Any = RestClient(port, bodies["rest"], args.connections)
            else:
                client = GrpcClient(grpc_port, bodies["grpc"], args.connections)
            results[protocol] = _measure(client, gateway.psutil, url, args.requests, args.warmup)
    except Exception as error:
        raise RuntimeError(f"{error}\n--- gateway log ---\n{tail(gateway.log)}") from error
    finally:
        gateway.stop()  # flushes the spans that wait
    text = log.read_text(errors="replace")
    results["export_problems"] = [
        line for line in text.splitlines() if "spans dropped" in line or "trace export" in line
    ]
    return results


def _summary(settings: list[Setting], rounds: list[dict[str, Any]], protocols: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for setting in settings:
        if setting.ratio is None:
            continue
        for protocol in protocols:
            pairs = [(r[setting.name][protocol], r["off"][protocol]) for r in rounds]
            throughput = [on["requests_per_s"] / off["requests_per_s"] for on, off in pairs]
            cpu = [on["us_per_request"] / off["us_per_request"] for on, off in pairs]
            extra = [on["us_per_request"] - off["us_per_request"] for on, off in pairs]
            loss = 1 - statistics.median(throughput)
            summary[f"{setting.name} {protocol}"] = {
                "throughput_on_over_off": round(statistics.median(throughput), 4),
                "throughput_ratios": [round(r, 4) for r in throughput],
                "cpu_per_request_on_over_off": round(statistics.median(cpu), 4),
                "extra_us_per_request": round(statistics.median(extra), 1),
                "throughput_loss": round(loss, 4),
                "goal_met": loss <= GOAL,
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.tracing_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000, help="measured, per protocol and gateway (10000)")
    parser.add_argument("--warmup", type=int, default=3000, help="sent first, per protocol and gateway (3000)")
    parser.add_argument("--pairs", type=int, default=5, help="rounds over the settings; medians reported (5)")
    parser.add_argument("--settings", type=_settings, default="off,0.1", help="off and ratios (default off,0.1)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--protocols", type=str, default="rest,grpc", help="rest, grpc or both (default)")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    settings: list[Setting] = args.settings
    protocols = args.protocols.split(",")
    work = Path(tempfile.mkdtemp(prefix="tracing-overhead-"))
    upstream_port = free_port()
    fake = [sys.executable, "-m", "tests.integration.gateway.fake_upstream", "--port", str(upstream_port)]
    Managed("fake upstream", [*fake, "--models", SERVABLE], work / "fake.log")
    receivers = Receivers(work, settings)
    bodies = {
        "rest": payloads.build("instances", SERVABLE, 1, count=1)[0].body,
        "grpc": payloads.build("grpc", SERVABLE, 1, count=1)[0].body,
    }
    upstream = f"127.0.0.1:{upstream_port}"
    rounds: list[dict[str, Any]] = []
    try:
        time.sleep(1.0)  # the fake upstream is listening
        for index in range(args.pairs):
            order = settings[index % len(settings) :] + settings[: index % len(settings)]
            if len(settings) == 2 and index % 2:
                order = order[::-1]
            measured: dict[str, Any] = {}
            for setting in order:
                tracing = None
                if setting.ratio is not None:
                    tracing = {"otlp_endpoint": receivers.endpoint(setting), "sample_ratio": setting.ratio}
                received = receivers.received(setting)
                run = _run_gateway(work, upstream, tracing, args, bodies)
                run["spans_received"] = receivers.received(setting) - received
                measured[setting.name] = run
                for protocol in protocols:
                    item = run[protocol]
                    print(
                        f"round {index + 1} {setting.name:<14} {protocol:<4}: {item['requests_per_s']:7.0f} req/s, "
                        f"{item['us_per_request']:6.1f} us gateway CPU per request "
                        f"({item['us_per_request_event_loop']:6.1f} on the event loop), "
                        f"{item['requests_per_upstream_call']:5.2f} requests per upstream call",
                        flush=True,
                    )
                if setting.ratio is not None:
                    print(
                        f"round {index + 1} {setting.name:<14} spans received {run['spans_received']}, "
                        f"export problems: {run['export_problems'] or 'none'}",
                        flush=True,
                    )
            rounds.append(measured)
    except Exception as error:
        print(f"tracing_overhead failed: {error}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        receivers.stop()
    summary = _summary(settings, rounds, protocols)
    for name, item in summary.items():
        print(
            f"{name}: keeps {item['throughput_on_over_off']:.1%} of the throughput with tracing off "
            f"(rounds {item['throughput_ratios']}), CPU per request x{item['cpu_per_request_on_over_off']:.3f} "
            f"({item['extra_us_per_request']:+.1f} us); goal loss <= {GOAL:.0%}: "
            f"{'met' if item['goal_met'] else 'NOT met'}",
            flush=True,
        )
    result = {
        "settings": [setting.name for setting in settings],
        "requests": args.requests,
        "warmup": args.warmup,
        "connections": args.connections,
        "receiver_nice": RECEIVER_NICE,
        "rounds": rounds,
        "summary": summary,
        "cpu": _cpu_name(),
        "cores": psutil.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    print(json.dumps({"summary": summary, "cpu": result["cpu"]}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    judged = [item for name, item in summary.items() if ":" not in name]
    return 0 if all(item["goal_met"] for item in judged) else 2


if __name__ == "__main__":
    sys.exit(main())
