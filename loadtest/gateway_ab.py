"""Interleaved A/B of the gateway's process settings: event loop x collector freeze x HTTP parser.

    python -m loadtest.gateway_ab [--repeats 6] [--requests 5000] [--grpc-requests 3000] [--connections 32]
        [--factor event_loop=uvloop,asyncio] [--factor gc_freeze=true,false] [--factor http_parser=httptools,h11]
        [--factor 'gc_threshold=[700, 7000]'] [--seed 13] [--budget-s 420]
        [--out bench/gateway-ab] [--report bench/gateway-ab/<run>/report.json]

A factor is a key of the gateway config's ``server:`` section and the values to try (the first is the
baseline; a YAML list for values with commas); without ``--factor`` the three above are crossed (8
configurations).

Each configuration (one value of every factor) is measured once per repeat, each time in a fresh gateway
process, in an order shuffled anew for every repeat (seeded), against one fake upstream that lives for
the whole run (``tests/integration/gateway/fake_upstream.py``: no model, so only the gateway's cost is
seen). A measurement: warm-up, then single-image REST predicts and gRPC Predicts over ``--connections``
keep-alive connections from this process (loadtest.gateway_cpu's clients), reading the gateway's CPU
time (user + system, /proc) and the wall time around each. Every gateway feature is on (API keys,
access log, metrics, coalescing).

The report gives, per configuration, the median over the repeats and the range (min-max); per factor,
the paired effect: within one repeat, a configuration against the one that differs in that factor
only, as a ratio, with how many pairs went each way and a two-sided sign-test p. Pairs from one repeat
share the machine's state, so p is a guide, not a proof. ``--budget-s`` stops starting new repeats once
the next would end past it; a configuration that fails is reported and the others go on. Prints
progress and a summary; writes ``report.md`` and ``report.json`` under ``--out/<timestamp>/``
(``--report`` rebuilds them from a report.json, partial ones too). Use a quiet machine
(``/work/bin/tg-timed`` here).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from loadtest import machine, payloads
from loadtest.abstats import effects, summarize
from loadtest.abstats import markdown as report_markdown
from loadtest.gateway_cpu import SERVABLE, GrpcClient, RestClient, cpu_seconds, gateway_config
from loadtest.procs import ROOT, Managed, free_port, stop_all, tail

DEFAULT_FACTORS: dict[str, list[Any]] = {
    "event_loop": ["uvloop", "asyncio"],
    "gc_freeze": [True, False],
    "http_parser": ["httptools", "h11"],
}
PROTOCOLS = ("rest", "grpc")


def _factor(text: str) -> tuple[str, list[Any]]:
    """``KEY=A,B`` (each a YAML scalar) or ``KEY=[A, B]`` (a YAML list, for values with commas)."""
    key, equals, values = text.partition("=")
    if values.startswith("["):
        parsed = yaml.safe_load(values)
        levels = parsed if isinstance(parsed, list) else []
    else:
        levels = [yaml.safe_load(value) for value in values.split(",") if value]
    if not equals or not key or len(levels) < 2:
        raise argparse.ArgumentTypeError(f"expected KEY=A,B[,...] (e.g. event_loop=uvloop,asyncio), got {text!r}")
    return key, levels


def configurations(factors: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(factors, values, strict=True)) for values in itertools.product(*factors.values())]


def schedule(configs: list[dict[str, Any]], repeats: int, seed: int) -> list[list[dict[str, Any]]]:
    """Every configuration once per repeat, in a fresh random order each time."""
    rng = random.Random(seed)
    return [rng.sample(configs, len(configs)) for _ in range(repeats)]


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, field) for field in ("user", "system", "nice", "irq", "softirq"))


async def _measure(client: Any, gateway: psutil.Process, requests: int, others: list[psutil.Process]) -> dict[str, Any]:
    cpu_before, others_before, busy_before = cpu_seconds(gateway), _sum_cpu(others), _busy_seconds()
    started = time.perf_counter()
    failures = await client.run(requests)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(gateway) - cpu_before
    rest_of_machine = _busy_seconds() - busy_before - cpu - (_sum_cpu(others) - others_before)
    if failures:
        raise RuntimeError(f"{len(failures)} of {requests} requests failed, e.g. {failures[0]}")
    return {
        "us_per_request": round(cpu / requests * 1e6, 1),
        "requests_per_s": round(requests / elapsed, 1),
        "other_processes_cores": round(max(rest_of_machine, 0.0) / elapsed, 3),
    }


def _sum_cpu(processes: list[psutil.Process]) -> float:
    """Each process's own CPU time (not its children's: the gateway is a child of this process)."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


async def measure_config(
    config: dict[str, Any], upstream: str, work: Path, args: argparse.Namespace, others: list[psutil.Process]
) -> dict[str, dict[str, Any]]:
    """One fresh gateway with ``config`` as its ``server:`` section: REST then gRPC, each after a warm-up.
    Starting and stopping it block the loop, which then has nothing else to do."""
    port, grpc_port = free_port(), free_port()
    path = work / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(gateway_config(port, grpc_port, upstream, 1, config)))
    log = work / f"gateway-{port}.log"
    gateway = Managed("gateway", [sys.executable, "-m", "serving.gateway", "--config", str(path)], log)
    try:
        gateway.wait_ready(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200, 60)
        _check_started_as(log, config)
        rest = payloads.build("instances", SERVABLE, 1, count=1)[0]
        grpc_body = payloads.build("grpc", SERVABLE, 1, count=1)[0].body
        clients: dict[str, Any] = {
            "rest": RestClient(port, rest.body, args.connections, content_type=rest.content_type),
            "grpc": GrpcClient(grpc_port, grpc_body, args.connections),
        }
        counts = {"rest": args.requests, "grpc": args.grpc_requests}
        results = {}
        for protocol in PROTOCOLS:
            failures = await clients[protocol].run(max(counts[protocol] // 5, args.connections))
            if failures:
                raise RuntimeError(f"{protocol} warm-up failed: {failures[0]}")
            results[protocol] = await _measure(clients[protocol], gateway.psutil, counts[protocol], others)
        return results
    except Exception as error:
        raise RuntimeError(f"{config}: {error}\n--- gateway log ---\n{tail(log)}") from error
    finally:
        gateway.stop(grace=10.0)
        log.unlink(missing_ok=True)


def _check_started_as(log: Path, config: dict[str, Any]) -> None:
    """The gateway's start line names the loop and parser it really runs (auto and fallbacks resolved)."""
    text = log.read_text(errors="replace")
    for key, suffix in (("event_loop", "event loop"), ("http_parser", "HTTP parser")):
        if key in config and f"{config[key]} {suffix}" not in text:
            raise RuntimeError(f"the gateway did not start with {key}={config[key]}")


async def _run(
    args: argparse.Namespace,
    configs: list[dict[str, Any]],
    upstream: Managed,
    work: Path,
    rows: list[dict[str, Any]],
    result: dict[str, Any],
    out: Path,
    started: float,
) -> None:
    """Every repeat's configurations in its shuffled order, in one event loop (the clients' grpc.aio
    channels all live in it); report.json is rewritten after each repeat, so a failure keeps the rest."""
    time.sleep(1.0)
    if not upstream.alive():
        raise RuntimeError(f"the fake upstream did not start:\n{tail(upstream.log)}")
    target = f"127.0.0.1:{upstream.args[upstream.args.index('--port') + 1]}"
    others = [upstream.psutil, psutil.Process()]
    failures: list[str] = result.setdefault("failures", [])
    for repeat, order in enumerate(schedule(configs, args.repeats, args.seed)):
        elapsed = time.monotonic() - started
        if repeat and elapsed / repeat * (repeat + 1) > args.budget_s:
            print(f"budget: stopping after {repeat} repeats ({elapsed:.0f} s)", flush=True)
            break
        for config in order:
            try:
                measured = await measure_config(config, target, work, args, others)
            except RuntimeError as error:  # one configuration that fails does not end the others' run
                failures.append(f"repeat {repeat + 1}: {error}")
                print(f"repeat {repeat + 1}/{args.repeats} {config}: FAILED {str(error)[:2000]}", flush=True)
                if len(failures) >= len(configs) and not rows:
                    raise RuntimeError("every configuration failed") from error
                continue
            for protocol, values in measured.items():
                rows.append({"repeat": repeat, "protocol": protocol, **config, **values})
            line = ", ".join(
                f"{p} {v['us_per_request']:6.1f} us {v['requests_per_s']:6.0f}/s" for p, v in measured.items()
            )
            print(f"repeat {repeat + 1}/{args.repeats} {config}: {line}", flush=True)
        (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gateway_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=6, help="measurements of every configuration (default 6)")
    parser.add_argument("--requests", type=int, default=5000, help="REST requests per measurement (default 5000)")
    parser.add_argument("--grpc-requests", type=int, default=3000, help="gRPC calls per measurement (default 3000)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections/calls (default 32)")
    parser.add_argument(
        "--factor", type=_factor, action="append", default=[], metavar="KEY=A,B", help="a server: setting to vary"
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of the shuffled orders (default 13)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no repeat that would end later")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gateway-ab", help="report folder parent")
    parser.add_argument("--report", type=Path, help="only rebuild report.md from this (partial) report.json")
    args = parser.parse_args(argv)
    if args.report:
        earlier = json.loads(args.report.read_text())
        earlier["rebuilt_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        finish(earlier, args.report.parent)
        return 0
    factors = dict(args.factor) or DEFAULT_FACTORS
    configs = configurations(factors)
    started, described = time.monotonic(), machine.describe()
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gateway-ab-"))
    upstream_port = free_port()
    upstream_args = [sys.executable, "-m", "tests.integration.gateway.fake_upstream", "--port", str(upstream_port)]
    upstream = Managed("fake upstream", [*upstream_args, "--models", SERVABLE], work / "fake.log")
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"command": " ".join(["python -m loadtest.gateway_ab", *(argv or sys.argv[1:])])}
    result.update(machine=described, factors=factors, connections=args.connections, rows=rows)
    result.update(requests={"rest": args.requests, "grpc": args.grpc_requests}, seed=args.seed)
    result["started_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        asyncio.run(_run(args, configs, upstream, work, rows, result, out, started))
    except Exception as error:
        print(f"gateway_ab failed: {error}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["load_average_end"] = machine.load_average()
    finish(result, out)
    return 0


def finish(result: dict[str, Any], out: Path) -> None:
    """Summaries and effects from the rows, then report.json and report.md in ``out``."""
    rows, factors = result["rows"], result["factors"]
    result["summary"] = {p: summarize(rows, list(factors), p) for p in PROTOCOLS}
    result["effects"] = {p: effects(rows, factors, p) for p in PROTOCOLS}
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report_markdown(result)
    (out / "report.md").write_text(text)
    print(text)
    print(f"report: {out}")


if __name__ == "__main__":
    sys.exit(main())
