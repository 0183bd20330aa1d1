"""What tracing costs at peak: the gateway's throughput and CPU per request with tracing off, and on at
a sampling ratio (10% by default), measured alternately in one run.

    python -m loadtest.tracing_overhead [--requests 4000] [--pairs 3] [--ratio 0.1] [--connections 32]

The gateway runs with the benchmark's settings (loadtest.gateway_cpu: API keys, access log, metrics,
coalescing) in front of the fake upstream (no model in the way, so the gateway is the bottleneck and
its peak is what tracing could lower). With tracing on, spans go to an OTLP receiver in this process
(loadtest.otlp_receiver). Each pair starts the gateway once per setting, in alternating order, and
sends ``--requests`` single-image Predicts over ``--connections`` keep-alive connections per protocol
(closed loop). Reported: the median over pairs of throughput on/off and gateway CPU per request
on/off; the goal is at most 5% less throughput. Use a quiet machine (``/work/bin/tg-timed`` here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest import payloads
from loadtest.gateway_cpu import SERVABLE, GrpcClient, RestClient, _cpu_name, gateway_config, measure
from loadtest.otlp_receiver import Receiver
from loadtest.procs import Managed, free_port, stop_all, tail

GOAL = 0.05  # at most 5% of peak throughput


def _run_gateway(
    work: Path, upstream: str, tracing: dict[str, Any] | None, args: argparse.Namespace, bodies: dict[str, bytes]
) -> dict[str, dict[str, Any]]:
    port, grpc_port = free_port(), free_port()
    config = gateway_config(port, grpc_port, upstream, 1)
    if tracing is not None:
        config["tracing"] = tracing
    path = work / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = Managed(
        "gateway", [sys.executable, "-m", "serving.gateway", "--config", str(path)], work / f"gw-{port}.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        gateway.wait_ready(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 60)
        results = {}
        for protocol in args.protocols.split(","):
            if protocol == "rest":
                client: Any = RestClient(port, bodies["rest"], args.connections)
            else:
                client = GrpcClient(grpc_port, bodies["grpc"], args.connections)
            results[protocol] = measure(client, gateway.psutil, args.requests, 1, warmup=min(1000, args.requests))
        return results
    except Exception as error:
        raise RuntimeError(f"{error}\n--- gateway log ---\n{tail(gateway.log)}") from error
    finally:
        gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.tracing_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="per protocol and gateway start (default 4000)")
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs; the median is reported (default 3)")
    parser.add_argument("--ratio", type=float, default=0.1, help="sampling ratio with tracing on (default 0.1)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--protocols", type=str, default="rest,grpc", help="rest, grpc or both (default)")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tracing-overhead-"))
    upstream_port = free_port()
    fake = [sys.executable, "-m", "tests.integration.gateway.fake_upstream", "--port", str(upstream_port)]
    Managed("fake upstream", [*fake, "--models", SERVABLE], work / "fake.log")
    receiver = Receiver().start()
    tracing = {"otlp_endpoint": receiver.endpoint, "sample_ratio": args.ratio}
    bodies = {
        "rest": payloads.build("instances", SERVABLE, 1, count=1)[0].body,
        "grpc": payloads.build("grpc", SERVABLE, 1, count=1)[0].body,
    }
    upstream = f"127.0.0.1:{upstream_port}"
    pairs: list[dict[str, dict[str, dict[str, Any]]]] = []
    try:
        time.sleep(1.0)  # the fake upstream is listening
        for index in range(args.pairs):
            order = ("off", "on") if index % 2 == 0 else ("on", "off")
            pair = {}
            for setting in order:
                pair[setting] = _run_gateway(work, upstream, tracing if setting == "on" else None, args, bodies)
                for protocol, run in pair[setting].items():
                    print(
                        f"pair {index + 1} tracing {setting:<3} {protocol:<4}: {run['requests_per_s']:7.0f} req/s, "
                        f"{run['us_per_request']:6.1f} us gateway CPU per request",
                        flush=True,
                    )
            pairs.append(pair)
    except Exception as error:
        print(f"tracing_overhead failed: {error}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        receiver.stop()
    summary: dict[str, Any] = {}
    for protocol in args.protocols.split(","):
        throughput = [p["on"][protocol]["requests_per_s"] / p["off"][protocol]["requests_per_s"] for p in pairs]
        cpu = [p["on"][protocol]["us_per_request"] / p["off"][protocol]["us_per_request"] for p in pairs]
        loss = 1 - statistics.median(throughput)
        summary[protocol] = {
            "throughput_on_over_off": round(statistics.median(throughput), 4),
            "throughput_ratios": [round(r, 4) for r in throughput],
            "cpu_per_request_on_over_off": round(statistics.median(cpu), 4),
            "throughput_loss": round(loss, 4),
            "goal_met": loss <= GOAL,
        }
        print(
            f"{protocol}: tracing on at {args.ratio:.0%} sampling keeps {statistics.median(throughput):.1%} of the "
            f"throughput (pairs {[f'{r:.3f}' for r in throughput]}), CPU per request x{statistics.median(cpu):.3f}; "
            f"goal loss <= {GOAL:.0%}: {'met' if loss <= GOAL else 'NOT met'}",
            flush=True,
        )
    result = {
        "ratio": args.ratio,
        "requests": args.requests,
        "connections": args.connections,
        "pairs": pairs,
        "summary": summary,
        "spans_received": len(receiver.spans()),
        "cpu": _cpu_name(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    print(json.dumps({"summary": summary, "spans_received": result["spans_received"], "cpu": result["cpu"]}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(item["goal_met"] for item in summary.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
