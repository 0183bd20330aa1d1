"""Measure the gateway's cold start to ready and its memory with everything loaded.

    python scripts/gateway_footprint.py --upstream 127.0.0.1:8500 --servables cnn,lstm [--runs 5]

Starts ``python -m serving.gateway`` ``--runs`` times against an upstream that is already up, and times
spawn -> first ``/readyz`` 200 (imports, app, channels, first GetModelStatus round). Then it exercises
every path once (REST predict, classify with a PNG upload, gRPC Predict, /metrics) and reads the
process's RSS and peak RSS from /proc. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import yaml
from PIL import Image

from loadtest.procs import free_port
from serving import protos
from serving.tensors import from_numpy


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load-independent, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(config: dict[str, object], directory: Path) -> tuple[subprocess.Popen[bytes], float, float, str]:
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{config['http_port']}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.gateway", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return process, time.perf_counter() - started, _cpu_seconds(process.pid), url
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError("the gateway exited")
            time.sleep(0.005)


def _exercise(url: str, grpc_port: int, servable: str) -> None:
    image = np.full((1, 28, 28, 1), 100.0, np.float32)
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(50):
            client.post(f"/v1/models/{servable}:predict", json={"instances": image.tolist()}).raise_for_status()
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (90, 120, 30)).save(buffer, format="PNG")
        for _ in range(20):
            files = {"file": ("x.png", buffer.getvalue(), "image/png")}
            client.post(f"/v1/classify/{servable}", files=files).raise_for_status()
        client.get("/v1/models").raise_for_status()
        client.get("/metrics").raise_for_status()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        request = protos.PredictRequest()
        request.model_spec.name = servable
        from_numpy(image, out=request.inputs["image"])
        for _ in range(50):
            protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", default="127.0.0.1:8500")
    parser.add_argument("--servables", default="cnn")
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    servables = arguments.servables.split(",")
    starts, cpu = [], []
    with tempfile.TemporaryDirectory() as directory:
        for run in range(arguments.runs):
            config = {
                "host": "127.0.0.1",
                "http_port": free_port(),
                "grpc_port": free_port(),
                "repo": None,
                "upstreams": {"default": {"targets": [arguments.upstream]}},
                "servables": {name: "default" for name in servables},
                "log_level": "warning",
            }
            process, seconds, cpu_seconds, url = _start(config, Path(directory))
            starts.append(seconds)
            cpu.append(cpu_seconds)
            if run == arguments.runs - 1:
                _exercise(url, int(config["grpc_port"]), servables[0])  # type: ignore[call-overload]
                rss, peak = _status_kib(process.pid, "VmRSS"), _status_kib(process.pid, "VmHWM")
                maps = Path(f"/proc/{process.pid}/maps").read_text()
            process.terminate()
            process.wait(30)
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                "cold_start_to_ready_s": {
                    "median": round(statistics.median(starts), 3),
                    "min": round(min(starts), 3),
                    "max": round(max(starts), 3),
                    "runs": len(starts),
                },
                "cpu_s_to_ready_median": round(statistics.median(cpu), 3),
                "load_average_1min": os.getloadavg()[0],
                "rss_mib_after_all_paths": round(rss / 1024, 1),
                "peak_rss_mib": round(peak / 1024, 1),
                "tensorflow_mapped": "tensorflow" in maps,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
