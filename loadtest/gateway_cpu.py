"""The gateway's CPU time per request, against the fake TF Serving upstream (no model in the way).

    python -m loadtest.gateway_cpu [--requests 6000] [--connections 32] [--rounds 3] [--processes 1]
        [--protocols rest,grpc] [--workers N] [--server event_loop=asyncio] [--server gc_freeze=false]

``--protocols`` also takes the Open Inference Protocol's v2-json, v2-binary and v2-grpc.

Starts the fake upstream (``tests/integration/gateway/fake_upstream.py``: numpy answers, no TensorFlow)
and the gateway with the benchmark's settings (API keys, access log at info, metrics, coalescing: every
feature on), then sends single-image requests from this process over ``--connections`` keep-alive
connections (REST: a bare asyncio HTTP/1.1 client; gRPC: grpc.aio with pre-serialized requests, so the
client costs little) and reads the gateway process's CPU time (user + system) around them. The figure,
microseconds of gateway CPU per request, does not depend on the model or on the upstream's speed.
``--root`` runs the gateway and fake upstream of another checkout (for before/after comparisons).
``--processes N`` measures N fresh gateway processes one after another and reports the median of their
figures (each process's own figure is the median of its rounds): on some hosts one process's figure
differs from the next one's by a third or more (docs/loadtest.md), so a goal is judged over several.
Prints a table and one JSON line; use a quiet machine (``/work/bin/tg-timed`` here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
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
from loadtest.procs import ROOT, Managed, free_port, stop_all, tail
from loadtest.targets import API_KEY

SERVABLE = "cnn"
CALLS_PER_CHANNEL = 8
# --protocols name -> the payload kind it sends (loadtest.payloads)
PAYLOADS = {"rest": "instances", "grpc": "grpc", "v2-json": "v2-json", "v2-binary": "v2-binary", "v2-grpc": "v2-grpc"}


def gateway_config(
    port: int, grpc_port: int, upstream: str, workers: int, server: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The gateway as the benchmark runs it (loadtest.targets.start_gateway), minus the repository;
    ``server`` overrides keys of the config's ``server:`` section (event_loop, gc_freeze, ...)."""
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "upstreams": {"default": {"targets": [upstream]}},
        "servables": {SERVABLE: "default"},
        "api_keys": [API_KEY],
        "log_level": "info",
    }
    sections = {**(server or {}), **({"workers": workers} if workers > 1 else {})}
    if sections:
        config["server"] = sections
    return config


def _server_setting(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. event_loop=asyncio), got {text!r}")
    return key, yaml.safe_load(value)


class RestClient:
    """Closed-loop HTTP/1.1 over keep-alive connections; pre-built request bytes, Content-Length framing."""

    def __init__(
        self,
        port: int,
        body: bytes,
        connections: int,
        path: str = f"/v1/models/{SERVABLE}:predict",
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.port, self.connections = port, connections
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n{extra}"
            f"x-api-key: {API_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body

    async def _connection(self, count: int, failures: list[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for _ in range(count):
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode(errors="replace"))
        finally:
            writer.close()

    async def run(self, requests: int) -> list[str]:
        failures: list[str] = []
        share = [requests // self.connections + (i < requests % self.connections) for i in range(self.connections)]
        await asyncio.gather(*(self._connection(n, failures) for n in share if n))
        return failures


class GrpcClient:
    def __init__(self, port: int, body: bytes, connections: int, method: str = payloads.GRPC_METHODS["grpc"]) -> None:
        self.port, self.body, self.connections, self.method = port, body, connections, method

    async def run(self, requests: int) -> list[str]:
        import grpc

        failures: list[str] = []
        # a channel (one HTTP/2 connection) per CALLS_PER_CHANNEL concurrent calls, so several gateway
        # workers each get connections; a local subchannel pool keeps the channels from sharing one
        count = -(-self.connections // CALLS_PER_CHANNEL)
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{self.port}", options=options) for _ in range(count)]
        calls = [c.unary_unary(self.method, request_serializer=None, response_deserializer=None) for c in channels]
        metadata = (("x-api-key", API_KEY),)

        async def worker(call: Any, count: int) -> None:
            for _ in range(count):
                try:
                    await call(self.body, timeout=30, metadata=metadata)
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")

        share = [requests // self.connections + (i < requests % self.connections) for i in range(self.connections)]
        try:
            await asyncio.gather(*(worker(calls[i % count], n) for i, n in enumerate(share) if n))
        finally:
            for channel in channels:
                await channel.close(None)
        return failures


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        times = member.cpu_times()
        total += times.user + times.system
    return total


def measure(client: Any, gateway: psutil.Process, requests: int, rounds: int, warmup: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        failures = await client.run(warmup)
        if failures:
            raise RuntimeError(f"warm-up failed: {failures[0]}")
        per_request, rates = [], []
        for _ in range(rounds):
            cpu_before, started = cpu_seconds(gateway), time.perf_counter()
            failures = await client.run(requests)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(gateway) - cpu_before
            if failures:
                raise RuntimeError(f"{len(failures)} of {requests} requests failed, e.g. {failures[0]}")
            per_request.append(cpu / requests * 1e6)
            rates.append(requests / elapsed)
        return {
            "us_per_request": statistics.median(per_request),
            "us_per_request_rounds": [round(v, 1) for v in per_request],
            "requests_per_s": statistics.median(rates),
            "requests": requests,
            "rounds": rounds,
        }

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gateway_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000, help="per round (default 6000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per gateway process (default 3)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="fresh gateway processes, one after another; each reports the median of its rounds, the "
        "result is the median over processes (default 1)",
    )
    parser.add_argument("--connections", type=str, default="32", help="comma-separated, e.g. 1,32 (default 32)")
    parser.add_argument(
        "--protocols",
        type=str,
        default="rest,grpc",
        help=f"comma-separated from {', '.join(PAYLOADS)} (default rest,grpc)",
    )
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes (config workers)")
    parser.add_argument(
        "--server",
        type=_server_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a gateway server: setting, repeatable: event_loop=asyncio, gc_freeze=false, gc_threshold=700",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose gateway runs (default: this one)")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.rounds < 1:
        parser.error("--processes and --rounds must be at least 1")
    root = args.root.resolve()
    work = Path(tempfile.mkdtemp(prefix="gateway-cpu-"))
    upstream_port = free_port()
    python = sys.executable
    fake_args = [python, "-m", "tests.integration.gateway.fake_upstream", "--port", str(upstream_port)]
    Managed("fake upstream", [*fake_args, "--models", SERVABLE], work / "fake.log", cwd=root)
    results: dict[str, Any] = {
        "root": str(root),
        "workers": args.workers,
        "server": dict(args.server),
        "processes": args.processes,
        "runs": [],
    }
    per_process: list[list[dict[str, Any]]] = []
    try:
        for number in range(args.processes):
            runs = _one_process(args, root, work, upstream_port, number)
            if runs is None:
                return 1
            per_process.append(runs)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
    results["runs"] = combine(per_process)
    if args.processes > 1:
        for run in results["runs"]:
            print(
                f"{run['protocol']:<5} {run['connections']:>3} connections: {run['us_per_request']:7.1f} us gateway "
                f"CPU per request, median of {args.processes} processes {run['us_per_request_processes']}",
                flush=True,
            )
    results["cpu"] = _cpu_name()
    print(json.dumps(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _one_process(
    args: argparse.Namespace, root: Path, work: Path, upstream_port: int, number: int
) -> list[dict[str, Any]] | None:
    """Start a gateway, measure every protocol x connections in it, stop it; None (after printing its
    log) if it failed."""
    port, grpc_port = free_port(), free_port()
    config = work / f"gateway-{number}.yaml"
    config.write_text(
        yaml.safe_dump(gateway_config(port, grpc_port, f"127.0.0.1:{upstream_port}", args.workers, dict(args.server)))
    )
    python = sys.executable
    command = [python, "-m", "serving.gateway", "--config", str(config)]
    gateway = Managed("gateway", command, work / f"gw-{number}.log", cwd=root)
    runs: list[dict[str, Any]] = []
    try:
        url = f"http://127.0.0.1:{port}"
        gateway.wait_ready(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 60)
        gateway.wait_ready(lambda: len(_listeners(port)) >= args.workers, 60)  # every worker, not just one
        for protocol in args.protocols.split(","):
            for connections in (int(c) for c in args.connections.split(",")):
                kind = PAYLOADS[protocol]
                payload = payloads.build(kind, SERVABLE, 1, count=1)[0]
                if kind in payloads.GRPC_KINDS:
                    client: Any = GrpcClient(grpc_port, payload.body, connections, payloads.GRPC_METHODS[kind])
                else:
                    path = payloads.path_for(kind, SERVABLE)
                    client = RestClient(port, payload.body, connections, path, payload.content_type, payload.headers)
                run = measure(client, gateway.psutil, args.requests, args.rounds, warmup=min(2000, args.requests))
                run.update(protocol=protocol, connections=connections)
                runs.append(run)
                process = f"process {number + 1}/{args.processes}: " if args.processes > 1 else ""
                print(
                    f"{process}{protocol:<5} {connections:>3} connections: {run['us_per_request']:7.1f} us gateway "
                    f"CPU per request (rounds {run['us_per_request_rounds']}), {run['requests_per_s']:.0f} req/s",
                    flush=True,
                )
    except Exception as error:
        print(f"gateway_cpu failed: {error}\n--- gateway log ---\n{tail(gateway.log)}", file=sys.stderr)
        return None
    finally:
        gateway.stop()
    return runs


def combine(per_process: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One run per (protocol, connections): the median over processes of each process's median round;
    every process's figure and every round stay in the result."""
    combined = []
    for index, first in enumerate(per_process[0]):
        runs = [process[index] for process in per_process]
        combined.append(
            {
                **first,
                "us_per_request": statistics.median(run["us_per_request"] for run in runs),
                "us_per_request_processes": [round(run["us_per_request"], 1) for run in runs],
                "us_per_request_rounds": [value for run in runs for value in run["us_per_request_rounds"]],
                "requests_per_s": statistics.median(run["requests_per_s"] for run in runs),
                "rounds": sum(run["rounds"] for run in runs),
            }
        )
    return combined


def _listeners(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid
    }


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
