"""What tracing costs at peak: the gateway's throughput and CPU per request with tracing off, and on at
a sampling ratio (10% by default), measured in short interleaved blocks in one run.

    python -m loadtest.tracing_overhead [--block 3000] [--pairs 20] [--settings off,0.1]
        [--connections 32] [--protocols rest,grpc] [--out FILE]

The gateway runs with the benchmark's settings (loadtest.gateway_cpu: API keys, access log, metrics,
coalescing) in front of the fake upstream (no model in the way, so the gateway is the bottleneck and
its peak is what tracing could lower). ``--settings`` lists what is compared: ``off``; a ratio
(``0.1``: spans exported over OTLP/gRPC to ``python -m loadtest.otlp_receiver``, a process of its own
at lower priority that parses and counts them, as a collector on another machine would take them off
this one); ``R:in-process`` (the receiver inside this process, next to the load generator: how the
benchmark ran until 2026-12-02). One gateway per setting runs for the whole benchmark; each gets
``--warmup`` requests per protocol first (enough for a first export, so one-time costs stay out of the
figure). Then, ``--pairs`` times per protocol, every gateway takes a block of ``--block`` single-image
Predicts over ``--connections`` keep-alive connections (closed loop), in alternating order: blocks of
about a second, back to back, so that a slow spell of the machine falls on both settings of a pair
instead of on one whole measurement (until 2026-12-02 each round started fresh gateways and measured
10,000 requests on each: rounds of the same code spread from 0.85 to 0.99).

Reported per ratio and protocol, from the per-pair ratios on/off of throughput: the median, the mean
with a 95% interval, the quartiles and the extremes; the pooled ratio (all requests over all time of
each setting); and the gateway's CPU per request (all its threads and its trace exporter process;
also the event loop's thread alone) with its ratio off/on, the capacity left if the gateway's CPU is
what limits it. The OTLP receiver's CPU is reported apart (a collector runs elsewhere). The goal is at
most 5% less throughput; it counts as met reliably when the mean's 95% interval lies above 0.95.
Use a quiet machine (``/work/bin/tg-timed`` here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
from loadtest.otlp_receiver import Receiver as LocalReceiver
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


class SpanReceiver:
    """A setting's OTLP receiver: a process of its own that counts (``R``), or one in this process that
    decodes every span (``R:in-process``)."""

    def __init__(self, work: Path, setting: Setting) -> None:
        self.process: Managed | None = None
        self.local: LocalReceiver | None = None
        self.endpoint: str
        if setting.in_process:
            self.local = LocalReceiver().start()
            self.endpoint = self.local.endpoint
            return
        port = free_port()
        self.stats = work / f"receiver-{port}.json"
        command = [sys.executable, "-m", "loadtest.otlp_receiver", "--port", str(port)]
        command += ["--stats", str(self.stats), "--nice", str(RECEIVER_NICE)]
        self.process = Managed("OTLP receiver", command, work / f"receiver-{port}.log")
        self.process.wait_ready(self.stats.exists, 30)
        self.endpoint = f"127.0.0.1:{port}"

    def received(self) -> int:
        if self.local is not None:
            return len(self.local.spans())
        return int(json.loads(self.stats.read_text())["spans"])

    def cpu(self) -> float:
        return cpu_seconds(self.process.psutil) if self.process is not None else 0.0

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


class Gateway:
    """One setting's gateway, started once, with its receiver (None when tracing is off)."""

    def __init__(self, work: Path, upstream: str, setting: Setting, args: argparse.Namespace) -> None:
        self.setting = setting
        self.receiver = SpanReceiver(work, setting) if setting.ratio is not None else None
        self.port, self.grpc_port = free_port(), free_port()
        config = gateway_config(self.port, self.grpc_port, upstream, 1)
        if self.receiver is not None:
            config["tracing"] = {"otlp_endpoint": self.receiver.endpoint, "sample_ratio": setting.ratio}
        path = work / f"gateway-{self.port}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = work / f"gw-{self.port}.log"
        command = [sys.executable, "-m", "serving.gateway", "--config", str(path)]
        self.process = Managed("gateway", command, self.log)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process.wait_ready(lambda: httpx.get(self.url + "/readyz", timeout=2).status_code == 200, 60)
        self.clients: dict[str, Any] = {}
        for protocol in args.protocols.split(","):
            if protocol == "rest":
                self.clients[protocol] = RestClient(self.port, args.bodies["rest"], args.connections)
            else:
                self.clients[protocol] = GrpcClient(self.grpc_port, args.bodies["grpc"], args.connections)

    def run(self, protocol: str, requests: int) -> None:
        failures = asyncio.run(self.clients[protocol].run(requests))
        if failures:
            raise RuntimeError(f"{len(failures)} of {requests} requests failed, e.g. {failures[0]}\n{tail(self.log)}")

    def block(self, protocol: str, requests: int) -> dict[str, Any]:
        """One measured block: its requests and how long they took."""
        started = time.perf_counter()
        self.run(protocol, requests)
        elapsed = time.perf_counter() - started
        return {"requests": requests, "seconds": elapsed, "requests_per_s": requests / elapsed}

    def counters(self) -> dict[str, float]:
        """CPU seconds so far (the gateway with its exporter process; its event loop; the receiver) and
        the coalescer's counts. Read around a protocol's blocks: between its own blocks the gateway
        idles, so its CPU over the phase is its blocks' CPU, read to the clock tick over many blocks."""
        calls, answered = _coalesced(self.url)
        return {
            "cpu": cpu_seconds(self.process.psutil),
            "loop": _loop_cpu(self.process.psutil),
            "receiver": self.receiver.cpu() if self.receiver else 0.0,
            "calls": calls,
            "answered": answered,
        }

    def stop(self) -> dict[str, Any]:
        """Stops the gateway (it flushes the spans that wait); what its receiver got and its log said."""
        self.process.stop()
        text = self.log.read_text(errors="replace")
        problems = [line for line in text.splitlines() if "spans dropped" in line or "trace export" in line]
        received = self.receiver.received() if self.receiver else 0
        if self.receiver is not None:
            self.receiver.stop()
        return {"spans_received": received, "export_problems": problems}


def _spread(values: list[float]) -> dict[str, Any]:
    """Median, mean with a 95% interval (t distribution), quartiles and extremes of ``values``."""
    count = len(values)
    mean = statistics.fmean(values)
    half = _T95.get(count - 1, 1.96) * statistics.stdev(values) / math.sqrt(count) if count > 1 else 0.0
    quartiles = statistics.quantiles(values, n=4) if count > 1 else [values[0]] * 3
    return {
        "median": round(statistics.median(values), 4),
        "mean": round(mean, 4),
        "mean_95": [round(mean - half, 4), round(mean + half, 4)],
        "quartiles": [round(quartiles[0], 4), round(quartiles[2], 4)],
        "range": [round(min(values), 4), round(max(values), 4)],
    }


def _phase(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    return {
        "us_per_request": (after["cpu"] - before["cpu"]) / requests * 1e6,
        "us_per_request_event_loop": (after["loop"] - before["loop"]) / requests * 1e6,
        "us_per_request_receiver": (after["receiver"] - before["receiver"]) / requests * 1e6,
        "requests_per_upstream_call": (after["answered"] - before["answered"])
        / max(after["calls"] - before["calls"], 1),
    }


def _summary(
    settings: list[Setting], blocks: dict[str, dict[str, list[dict[str, Any]]]], phases: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    off = next(setting for setting in settings if setting.ratio is None)
    for setting in settings:
        if setting.ratio is None:
            continue
        for protocol, measured in blocks[setting.name].items():
            base = blocks[off.name][protocol]
            throughput = [on["requests_per_s"] / was["requests_per_s"] for on, was in zip(measured, base, strict=True)]

            def rate(items: list[dict[str, Any]]) -> float:
                return sum(item["requests"] for item in items) / sum(item["seconds"] for item in items)

            on, was = phases[setting.name][protocol], phases[off.name][protocol]
            spread = _spread(throughput)
            summary[f"{setting.name} {protocol}"] = {
                "throughput_on_over_off": spread,
                "throughput_ratios": [round(ratio, 4) for ratio in throughput],
                "pooled_throughput_on_over_off": round(rate(measured) / rate(base), 4),
                "requests_per_s_off_on": [round(rate(base)), round(rate(measured))],
                "us_per_request_off_on": [round(was["us_per_request"], 1), round(on["us_per_request"], 1)],
                "us_per_request_event_loop_off_on": [
                    round(was["us_per_request_event_loop"], 1),
                    round(on["us_per_request_event_loop"], 1),
                ],
                "cpu_capacity_on_over_off": round(was["us_per_request"] / on["us_per_request"], 4),
                "us_per_request_receiver": round(on["us_per_request_receiver"], 1),
                "requests_per_upstream_call_off_on": [
                    round(was["requests_per_upstream_call"], 2),
                    round(on["requests_per_upstream_call"], 2),
                ],
                "goal_met_on_median": spread["median"] >= 1 - GOAL,
                "goal_met_reliably": spread["mean_95"][0] >= 1 - GOAL,
            }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.tracing_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", type=int, default=3000, help="requests per measured block (3000)")
    parser.add_argument("--warmup", type=int, default=3000, help="sent first, per protocol and gateway (3000)")
    parser.add_argument("--pairs", type=int, default=20, help="blocks per setting and protocol (20)")
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
    args.bodies = {
        "rest": payloads.build("instances", SERVABLE, 1, count=1)[0].body,
        "grpc": payloads.build("grpc", SERVABLE, 1, count=1)[0].body,
    }
    upstream = f"127.0.0.1:{upstream_port}"
    blocks: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {p: [] for p in protocols} for s in settings}
    phases: dict[str, dict[str, Any]] = {s.name: {} for s in settings}
    exports: dict[str, Any] = {}
    gateways: list[Gateway] = []
    started = time.strftime("%H:%M:%S")
    try:
        time.sleep(1.0)  # the fake upstream is listening
        gateways = [Gateway(work, upstream, setting, args) for setting in settings]
        for gateway in gateways:
            for protocol in protocols:
                gateway.run(protocol, args.warmup)
        for protocol in protocols:
            before = {gateway.setting.name: gateway.counters() for gateway in gateways}
            for index in range(args.pairs):
                shift = index % len(gateways)
                order = gateways[shift:] + gateways[:shift]
                if len(gateways) == 2 and index % 2:
                    order = order[::-1]
                line = []
                for gateway in order:
                    item = gateway.block(protocol, args.block)
                    blocks[gateway.setting.name][protocol].append(item)
                    line.append(f"{gateway.setting.name} {item['requests_per_s']:5.0f}/s")
                print(f"{protocol} pair {index + 1:2}: " + ", ".join(line), flush=True)
            for gateway in gateways:
                name = gateway.setting.name
                phases[name][protocol] = phase = _phase(before[name], gateway.counters(), args.pairs * args.block)
                print(
                    f"{protocol} {name}: {phase['us_per_request']:.1f} us gateway CPU per request (event loop "
                    f"{phase['us_per_request_event_loop']:.1f}), receiver {phase['us_per_request_receiver']:.1f} us, "
                    f"{phase['requests_per_upstream_call']:.2f} requests per upstream call",
                    flush=True,
                )
        for gateway in gateways:
            if gateway.setting.ratio is not None:
                exports[gateway.setting.name] = gateway.stop()
                print(f"{gateway.setting.name}: {exports[gateway.setting.name]}", flush=True)
    except Exception as error:
        print(f"tracing_overhead failed: {error}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        for gateway in gateways:
            if gateway.receiver is not None:
                gateway.receiver.stop()
    summary = _summary(settings, blocks, phases)
    for name, item in summary.items():
        spread = item["throughput_on_over_off"]
        print(
            f"{name}: throughput on/off median {spread['median']:.3f}, mean {spread['mean']:.3f} "
            f"(95% {spread['mean_95'][0]:.3f}-{spread['mean_95'][1]:.3f}), quartiles {spread['quartiles']}, "
            f"range {spread['range']}, pooled {item['pooled_throughput_on_over_off']:.3f}; gateway CPU per request "
            f"{item['us_per_request_off_on'][0]} -> {item['us_per_request_off_on'][1]} us "
            f"(capacity {item['cpu_capacity_on_over_off']:.3f}), receiver {item['us_per_request_receiver']} us; "
            f"goal loss <= {GOAL:.0%}: {'met reliably' if item['goal_met_reliably'] else 'NOT met reliably'}"
            f"{'' if item['goal_met_reliably'] or not item['goal_met_on_median'] else ' (met on the median)'}",
            flush=True,
        )
    result = {
        "settings": [setting.name for setting in settings],
        "block": args.block,
        "pairs": args.pairs,
        "warmup": args.warmup,
        "connections": args.connections,
        "receiver_nice": RECEIVER_NICE,
        "blocks": blocks,
        "phases": phases,
        "exports": exports,
        "summary": summary,
        "cpu": _cpu_name(),
        "cores": psutil.cpu_count(),
        "date": time.strftime("%Y-%m-%d %Z"),
        "time": f"{started}-{time.strftime('%H:%M:%S')}",
    }
    print(json.dumps({"summary": summary, "cpu": result["cpu"]}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    judged = [item for name, item in summary.items() if ":" not in name]
    return 0 if all(item["goal_met_reliably"] for item in judged) else 2


# two-sided 95% quantiles of Student's t by degrees of freedom (beyond 30: the normal's 1.96)
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}
_T95.update({11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09})
_T95.update({20: 2.09, 21: 2.08, 22: 2.07, 23: 2.07, 24: 2.06, 25: 2.06, 26: 2.06, 27: 2.05, 28: 2.05})
_T95.update({29: 2.05, 30: 2.04})


if __name__ == "__main__":
    sys.exit(main())
