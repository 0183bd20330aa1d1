"""Benchmark for the embedded model server (issue 4's goals), against its baselines in one run.

    nice -n 10 .venv/bin/python -m loadtest.bench_modelserver --repo models --duration 10

1. 32 concurrent gRPC clients sending one image each to ``cnn``: throughput with batching on vs off.
2. Clients sending batches of 64 over gRPC: images/s vs the same runtime called in-process at batch 64.
3. p50 / p99 latency at low load (one client, one image) for each runtime (SavedModel, TFLite, ONNX).

Servers run as real processes on loopback; clients send pre-serialized requests and skip parsing the
answers, so the client's own CPU use stays small on a shared machine. Prints a table and writes
``bench/results/modelserver-<time>.{json,md}``. Without ``REPO/cnn`` it generates small contract
models (tests/integration/modelserver/contract_models.py); missing ``cnn_dynamic`` / ``cnn_onnx``
variants are converted from ``REPO/cnn``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from loadtest.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
PREDICT = "/tensorflow.serving.PredictionService/Predict"
RUNTIMES = {"cnn": "tensorflow", "cnn_dynamic": "tflite", "cnn_onnx": "onnx"}


def latest_version(base: Path) -> Path:
    return max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def prepare_repo(repo: Path, work: Path) -> Path:
    helper = "tests.integration.modelserver.contract_models"
    if not (repo / "cnn").is_dir():
        print(f"{repo}/cnn not found: generating small contract models in {work}")
        subprocess.run([sys.executable, "-m", helper, str(work), "--versions", "1"], cwd=ROOT, check=True)
        return work
    for variant, builder in (("cnn_dynamic", "build_tflite"), ("cnn_onnx", "build_onnx")):
        if not (repo / variant).is_dir():
            source = latest_version(repo / "cnn")
            target = work / variant / source.name
            code = (
                f"import pathlib as p\nfrom {helper} import {builder}\n"
                f"{builder}(p.Path('{source}'), p.Path('{target}'))"
            )
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return repo


def write_config(repo: Path, work: Path) -> Path:
    lines = ["model_config_list {"]
    for name, runtime in RUNTIMES.items():
        base = repo / name if (repo / name).is_dir() else work / name
        lines.append(f'  config {{ name: "{name}" base_path: "{base}" model_platform: "{runtime}" }}')
    lines.append("}")
    path = work / "bench.config"
    path.write_text("\n".join(lines) + "\n")
    return path


class Server:
    def __init__(self, config: Path, extra: list[str], log: Path) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "serving.modelserver", f"--port={self.port}", f"--model_config_file={config}"]
        self.log = log
        with log.open("wb") as stream:
            self.process = subprocess.Popen([*command, *extra], cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while "Running gRPC ModelServer" not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"model server did not start:\n{log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


ECHO_SERVER = """
import asyncio, sys, grpc
from serving import protos
async def main():
    server = grpc.aio.server()
    answer = protos.PredictResponse()
    answer.outputs["probabilities"].float_val.extend([0.1] * 10)
    async def predict(request, context):
        return answer
    server.add_generic_rpc_handlers((protos.PREDICTION_SERVICE.handler({"Predict": predict}),))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


def rpc_ceiling(payload: bytes, clients: int, duration: float) -> dict[str, float]:
    """The same clients against a Python gRPC server that does nothing: the RPC cost alone."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return asyncio.run(closed_loop(port, payload, clients, duration))
    finally:
        process.kill()
        process.wait()


def request_bytes(model: str, images: np.ndarray) -> bytes:
    from serving import protos
    from serving.tensors import from_numpy

    request = protos.PredictRequest()
    request.model_spec.name = model
    from_numpy(images, request.inputs["image"])
    return bytes(request.SerializeToString())


async def closed_loop(port: int, payload: bytes, clients: int, duration: float) -> dict[str, float]:
    """``clients`` concurrent callers, each sending its next request when the last is answered."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        for _ in range(3):
            await call(payload, timeout=60)
        stop_at = time.perf_counter() + duration

        async def client() -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                await call(payload, timeout=60)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "requests": len(latencies),
    }


def in_process_images_per_s(model_dir: Path, batch: np.ndarray, duration: float) -> float:
    from serving.modelserver import runtimes

    model = runtimes.load("tensorflow", model_dir, runtimes.RuntimeOptions())
    signature = model.signatures["serving_default"]
    outputs = sorted(signature.outputs)
    for _ in range(3):
        model.predict(signature, {"image": batch}, outputs)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration:
        model.predict(signature, {"image": batch}, outputs)
        count += 1
    return count * len(batch) / (time.perf_counter() - started)


def images(count: int) -> np.ndarray:
    dataset = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    if dataset.is_file():
        import gzip

        with gzip.open(dataset) as stream:
            raw = stream.read(16 + count * 784)[16:]
        return np.frombuffer(raw, np.uint8).reshape(count, 28, 28, 1).astype(np.float32)
    return np.random.default_rng(0).integers(0, 256, (count, 28, 28, 1)).astype(np.float32)


def run(repo: Path, duration: float, out: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-modelserver-"))
    try:
        repo = prepare_repo(repo, work)
        config = write_config(repo, work)
        batching = work / "batching.config"
        batching.write_text(
            "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\n"
            "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
        )
        one, sixty_four = request_bytes("cnn", images(1)), request_bytes("cnn", images(64))
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "gpu": "none",
                "load_average_at_start": os.getloadavg()[0],
            },
            "duration_s": duration,
            "low_load": {},
        }
        server = Server(config, [], work / "off.log")
        try:
            for name, runtime in RUNTIMES.items():
                payload = request_bytes(name, images(1))
                results["low_load"][runtime] = asyncio.run(closed_loop(server.port, payload, 1, duration / 2))
            results["batching_off_32_clients"] = asyncio.run(closed_loop(server.port, one, 32, duration))
            grpc64 = asyncio.run(closed_loop(server.port, sixty_four, 2, duration))
            results["grpc_batch64"] = {**grpc64, "images_per_s": grpc64["requests_per_s"] * 64}
        finally:
            server.stop()
        results["rpc_ceiling_32_clients"] = rpc_ceiling(one, 32, duration)
        server = Server(config, ["--enable_batching", f"--batching_parameters_file={batching}"], work / "on.log")
        try:
            results["batching_on_32_clients"] = asyncio.run(closed_loop(server.port, one, 32, duration))
        finally:
            server.stop()
        results["in_process_batch64_images_per_s"] = in_process_images_per_s(
            latest_version(repo / "cnn"), images(64), duration
        )
        on = results["batching_on_32_clients"]["requests_per_s"]
        off = results["batching_off_32_clients"]["requests_per_s"]
        results["batching_speedup"] = on / off
        results["grpc_vs_in_process"] = (
            results["grpc_batch64"]["images_per_s"] / results["in_process_batch64_images_per_s"]
        )
        results["models"] = str(repo)
        results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(results, out)
    return results


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    off, on = results["batching_off_32_clients"], results["batching_on_32_clients"]
    lines = [
        f"Machine: {machine['cpus']} CPU cores ({machine['processor']}), no GPU, Python {machine['python']}; "
        f"load average {machine['load_average_at_start']:.1f} at start, {machine['load_average_at_end']:.1f} at end "
        f"(other work on the machine); {results['duration_s']:.0f} s per measurement; models: {results['models']}",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| 32 gRPC clients, 1 image each, batching off | {off['requests_per_s']:.0f} req/s "
        f"(p50 {off['p50_ms']:.1f} ms, p99 {off['p99_ms']:.1f} ms) |",
        f"| 32 gRPC clients, 1 image each, batching on | {on['requests_per_s']:.0f} req/s "
        f"(p50 {on['p50_ms']:.1f} ms, p99 {on['p99_ms']:.1f} ms) |",
        f"| batching on / off | {results['batching_speedup']:.2f}x (goal >= 3x) |",
        f"| same 32 clients, do-nothing Python gRPC server (RPC ceiling) | "
        f"{results['rpc_ceiling_32_clients']['requests_per_s']:.0f} req/s |",
        f"| batch 64 over gRPC (2 clients) | {results['grpc_batch64']['images_per_s']:.0f} images/s |",
        f"| batch 64 in-process (same runtime) | {results['in_process_batch64_images_per_s']:.0f} images/s |",
        f"| gRPC / in-process | {results['grpc_vs_in_process'] * 100:.0f}% (goal >= 50%) |",
        "",
        "| runtime (1 client, 1 image) | p50 | p99 | req/s |",
        "|---|---|---|---|",
    ]
    for runtime, numbers in results["low_load"].items():
        lines.append(
            f"| {runtime} | {numbers['p50_ms']:.2f} ms | {numbers['p99_ms']:.2f} ms | {numbers['requests_per_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"modelserver-{stamp}.json").write_text(json.dumps(results, indent=2))
    (out / f"modelserver-{stamp}.md").write_text(markdown(results))
    print(markdown(results))
    print(f"report: {out}/modelserver-{stamp}.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(os.environ.get("TENSORGATE_REPO", "models")))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    run(args.repo.resolve(), args.duration, args.out)


if __name__ == "__main__":
    main()
