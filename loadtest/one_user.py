"""Where one caller's time goes: each target's latency with one caller and no load generator in the way.

    python -m loadtest.one_user --repo <trained models> [--requests 1500] [--rounds 4] [--out bench/one-user]

The load test measures its one-user step through Locust, whose own per-request cost is part of every
figure it reports; on 2 shared cores that cost is the same order as the servers' own. This probe starts
the same servers as ``python -m loadtest`` (the embedded model server with batching on, the gateway with
API keys, LitServe and the hand-written app on the ONNX model), plus a second gateway with the same
settings in front of the fake upstream the gateway's tests use (numpy answers, no model), so the
gateway's own share of a request shows apart from the model server's, and calls each one from a plain client
in this process: ``http.client`` on one keep-alive connection for REST, a synchronous gRPC stub for gRPC,
one request at a time. It also times the model alone, in-process (TensorFlow for ``cnn``, onnxruntime
for the ONNX model the baselines serve), with the model server's own runtime classes.

Targets alternate in rounds (A B C ... A B C ...) so that drift on a shared virtual machine lands on
all of them alike; a target's figure is the median of its rounds' medians. Each request's answer is
checked (HTTP 200 / gRPC OK); nothing else runs on the cores while it measures. Writes
``one_user.json`` and ``one_user.md`` under ``--out/<timestamp>/`` and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import targets as servers
from loadtest.machine import describe as describe_machine
from loadtest.payloads import encode, path_for, test_images
from loadtest.procs import Managed, free_port

PREDICT = "/tensorflow.serving.PredictionService/Predict"
Call = Callable[[], None]


def rest_caller(base_url: str, path: str, body: bytes, content_type: str, api_key: str = "") -> Call:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"content-type": content_type}
    if api_key:
        headers["x-api-key"] = api_key

    def call() -> None:
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed the idle keep-alive connection between rounds: open a new one
            connection.close()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {base_url}{path}: HTTP {response.status}: {answer[:200]!r}")

    return call


def grpc_caller(target: str, body: bytes, api_key: str = "") -> Call:
    import grpc

    channel = grpc.insecure_channel(target)
    method = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
    metadata = (("x-api-key", api_key),) if api_key else None

    def call() -> None:
        method(body, timeout=30, metadata=metadata)

    return call


def in_process_caller(kind: str, version_dir: Path, image: np.ndarray) -> Call:
    """The model server's own runtime class, with the model server's default thread settings, called
    directly: the model's share of a request."""
    from serving.modelserver.app import runtime_options
    from serving.modelserver.flags import Flags

    options = runtime_options(Flags())
    if kind == "onnx":
        from serving.modelserver.runtimes.onnx import OnnxModel

        model: Any = OnnxModel(version_dir, options)
    else:
        from serving.modelserver.runtimes.savedmodel import SavedModel

        model = SavedModel(version_dir, options)
    signature = model.signatures["serving_default"]
    inputs = {alias: image.reshape(1, 28, 28, 1).astype(np.float32) for alias in signature.inputs}
    outputs = sorted(signature.outputs)

    def call() -> None:
        model.predict(signature, inputs, outputs)

    return call


def measure(call: Call, requests: int, warm: int = 20) -> list[float]:
    """Milliseconds of ``requests`` calls made one after another, after ``warm`` calls not timed (a
    connection the server closed while other targets ran is reopened there)."""
    for _ in range(warm):
        call()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def interleaved(callers: dict[str, Call], requests: int, rounds: int, warmup: int) -> dict[str, list[list[float]]]:
    """Each caller warmed, then ``rounds`` rounds in which every caller makes ``requests`` calls in turn
    (A B C ... A B C ...), so drift on a shared machine lands on all of them alike."""
    for call in callers.values():
        measure(call, 0, warm=warmup)
    measured: dict[str, list[list[float]]] = {name: [] for name in callers}
    for _ in range(rounds):
        for name, call in callers.items():
            measured[name].append(measure(call, requests))
    return measured


def added_p50(rounds: list[list[float]], base: list[list[float]]) -> dict[str, Any]:
    """What a front adds to one caller's p50 over ``base``: per round (the two measured minutes apart at
    most), and the median of those differences."""
    each = [float(np.percentile(a, 50) - np.percentile(b, 50)) for a, b in zip(rounds, base, strict=True)]
    return {"median_ms": statistics.median(each), "round_ms": [round(value, 3) for value in each]}


def summarise(rounds: list[list[float]]) -> dict[str, Any]:
    every = np.concatenate(rounds)
    return {
        "p50_ms": statistics.median(float(np.percentile(r, 50)) for r in rounds),
        "p99_ms": statistics.median(float(np.percentile(r, 99)) for r in rounds),
        "round_p50_ms": [round(float(np.percentile(r, 50)), 3) for r in rounds],
        "requests": int(every.size),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = result["targets"]
    peer = rows.get("peer", {}).get("p50_ms")
    machine = result["machine"]
    lines = [
        f"# One caller, no load generator ({result['started']})",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores_logical']} logical cores, {machine['memory_gib']} GiB; "
        f"load average at the start {machine['load_average_start']}. Command: `{result['command']}`.",
        f"{result['requests']} requests per target per round, {result['rounds']} rounds, targets alternating; "
        "p50 / p99 are medians over the rounds. 'x peer' is the peer's p50 over the target's (with one "
        "caller, requests per second are 1000 / mean latency, so this is the one-user throughput ratio "
        "up to the spread of the latencies).",
        "",
        "| target | what answers | p50 ms | p99 ms | x peer (p50) | p50 per round |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        ratio = f"{peer / row['p50_ms']:.2f}" if peer and name != "peer" else "-"
        rounds = ", ".join(f"{value:.2f}" for value in row["round_p50_ms"])
        lines.append(f"| {name} | {row['what']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} | {rounds} |")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.one_user", description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="trained models (cnn at least)")
    parser.add_argument("--requests", type=int, default=1500, help="requests per target per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200, help="requests per target before the first round")
    parser.add_argument("--out", type=Path, default=Path("bench/one-user"))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tensorgate" / "loadtest")
    args = parser.parse_args(argv)
    if not (args.repo / "cnn").is_dir():
        parser.error(f"{args.repo / 'cnn'}: missing; train first (python -m training --repo {args.repo})")
    started = dt.datetime.now(dt.UTC)
    out = args.out / started.strftime("%Y%m%d-%H%M%S")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    onnx = servers.onnx_model(args.repo, args.cache, logs / "tf2onnx.log")
    repo, _ = servers.work_repo(args.repo, onnx, Path(tempfile.mkdtemp(prefix="one-user-")), {"cnn", "cnn_onnx"})
    image = test_images(1)[0][0]
    instances, json_type = encode("instances", image[None])
    grpc_body, _ = encode("grpc", image[None])
    onnx_body, _ = encode("grpc", image[None], "cnn_onnx")
    running: list[servers.Server] = []
    try:
        model_server = servers.start_modelserver(repo / "models.config", ["cnn", "cnn_onnx"], logs, True, 300)
        running.append(model_server)
        gateway = servers.start_gateway(repo, model_server.grpc, ["cnn", "cnn_onnx"], logs, 120)
        running.append(gateway)
        baselines = {kind: servers.start_baseline(kind, args.repo, onnx, logs, 120) for kind in ("peer", "handmade")}
        running.extend(baselines.values())
        # The same gateway settings in front of the fake upstream (numpy answers at once): the gateway's own share.
        fake_port = free_port()
        fake_args = [sys.executable, "-m", "tests.integration.gateway.fake_upstream", "--port", str(fake_port)]
        fake = Managed("fake upstream", [*fake_args, "--models", "cnn"], logs / "fake_upstream.log")
        running.append(servers.Server(fake, ""))
        (logs / "fake").mkdir(exist_ok=True)
        fake_gateway = servers.start_gateway(repo, f"127.0.0.1:{fake_port}", ["cnn"], logs / "fake", 120)
        running.append(fake_gateway)
        key = servers.API_KEY

        def rest(server: servers.Server, servable: str = "cnn", api_key: str = "") -> Call:
            return rest_caller(server.rest, path_for("instances", servable), instances, json_type, api_key)

        fake_upstream = f"127.0.0.1:{fake_port}"
        callers: dict[str, tuple[str, Call]] = {
            "in-process cnn (TensorFlow)": (
                "the model alone",
                in_process_caller("tf", servers.latest(args.repo / "cnn"), image),
            ),
            "in-process cnn_onnx (onnxruntime)": ("the model alone", in_process_caller("onnx", onnx.parent, image)),
            "modelserver-grpc": ("model server, `cnn`", grpc_caller(model_server.grpc, grpc_body)),
            "modelserver-grpc-onnx": ("model server, `cnn_onnx`", grpc_caller(model_server.grpc, onnx_body)),
            "gateway-rest": ("gateway -> model server, `cnn`", rest(gateway, api_key=key)),
            "gateway-grpc": ("gateway -> model server, `cnn`", grpc_caller(gateway.grpc, grpc_body, key)),
            "gateway-rest-onnx": ("gateway -> model server, `cnn_onnx`", rest(gateway, "cnn_onnx", key)),
            "fake-upstream-grpc": ("the fake upstream (no model)", grpc_caller(fake_upstream, grpc_body)),
            "gateway-rest-fake": ("gateway -> fake upstream", rest(fake_gateway, api_key=key)),
            "gateway-grpc-fake": ("gateway -> fake upstream", grpc_caller(fake_gateway.grpc, grpc_body, key)),
            "handmade": ("FastAPI + onnxruntime, one process", rest(baselines["handmade"])),
            "peer": ("LitServe + onnxruntime", rest(baselines["peer"])),
        }
        calls = {name: call for name, (_, call) in callers.items()}
        rounds = interleaved(calls, args.requests, args.rounds, args.warmup)
    finally:
        for server in reversed(running):
            server.managed.stop()
    result = {
        "started": started.isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "command": "python -m loadtest.one_user " + " ".join(sys.argv[1:] if argv is None else argv),
        "requests": args.requests,
        "rounds": args.rounds,
        "targets": {name: {"what": callers[name][0], **summarise(rounds[name])} for name in callers},
    }
    (out / "one_user.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (out / "one_user.md").write_text(text)
    print(text)
    print(f"report: {out / 'one_user.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
