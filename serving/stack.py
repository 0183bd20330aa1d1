"""python -m serving.stack: the whole embedded stack on one machine (what `make run` starts).

Trains the quick models when the repository lacks them, exports them (idempotent: existing variants
are verified, not rebuilt), starts the model server (gRPC 8500, REST 8501) and the gateway (HTTP 8000,
gRPC 8001), waits until the gateway is ready, prints example calls and serves until Ctrl-C or SIGTERM.
Both servers are supervised: one that dies is restarted with backoff and the log says why it died.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from serving.supervisor import Supervised, configure_logging, exit_reason

MODELS = ("cnn", "lstm", "transformer", "ensemble")


def _has_versions(path: Path) -> bool:
    return path.is_dir() and any(p.name.isdigit() for p in path.iterdir())


def _elapsed(started: float) -> str:
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _step(title: str, command: list[str], log: Path) -> None:
    """Run one stage: its progress (stdout) on the terminal, its stderr (TensorFlow's start-up and
    deprecation noise, warnings, errors) appended to ``log``; say how long it took."""
    print(f"\n==> {title}\n    {' '.join(command)}", flush=True)
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"\n==> {title}\n    {' '.join(command)}\n")
        sink.flush()
        completed = subprocess.run(command, check=False, stderr=sink)
    if completed.returncode != 0:
        raise SystemExit(
            f"error: step '{title}' failed with exit code {completed.returncode} after {_elapsed(started)}; "
            f"the end of {log}:\n{_tail(log)}"
        )
    print(f"    done in {_elapsed(started)}", flush=True)


def _wait_ready(url: str, children: list[Supervised], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive:
                assert child.process is not None
                lines = "\n    ".join(child.last_lines)
                raise SystemExit(
                    f"error: the {child.name} {exit_reason(child.process.returncode)} before the stack was ready; "
                    f"its last output:\n    {lines}"
                )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = f"{error.code} {error.read().decode(errors='replace')[:200]}"
        except OSError as error:
            last = str(error)
        time.sleep(0.5)
    raise SystemExit(f"error: the gateway was not ready after {timeout_s:.0f}s ({url}: {last})")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the stack as Ctrl-C does: children stopped in order


def examples(http_port: int, grpc_port: int) -> str:
    base = f"http://localhost:{http_port}"
    return f"""
Ready. Try:
  curl -s {base}/v1/models                                   # servables, versions, states
  curl -s {base}/v1/models/cnn                               # TF Serving model status
  curl -s {base}/v1/models/cnn/metadata                      # signatures
  python -c "import json; print(json.dumps({{'instances': [[[[0.0]]*28]*28]}}))" > /tmp/one.json
  curl -s -X POST {base}/v1/models/cnn:predict -d @/tmp/one.json   # TF Serving REST predict
  curl -s -X POST {base}/v1/classify/cnn -F file=@shirt.png        # friendly API (see docs/gateway.md)
  curl -s {base}/metrics | head                              # Prometheus
gRPC (TF Serving's PredictionService on :{grpc_port}, no TensorFlow needed on the client):
  python - <<'PY'
import grpc, numpy as np
from serving import protos, tensors
stub = protos.PREDICTION_SERVICE.stub(grpc.insecure_channel("localhost:{grpc_port}"))
request = protos.PredictRequest()
request.model_spec.name = "cnn"
tensors.from_numpy(np.zeros((1, 28, 28, 1), np.float32), request.inputs["image"])
print(tensors.to_numpy(stub.Predict(request, timeout=10).outputs["class_id"]))
PY
Ctrl-C stops both servers."""


def _prepare(repo: Path, python: str, log: Path) -> None:
    """Train the quick models if the repository lacks them, then export (idempotent)."""
    print(f"==> TensorFlow's start-up messages and warnings go to {log}", flush=True)
    missing = [name for name in MODELS if not _has_versions(repo / name)]
    if missing:
        _step(
            f"training quick models ({', '.join(missing)} missing in {repo}; about 3 minutes on 2 cores)",
            [python, "-m", "training", "--model", "all", "--profile", "quick", "--repo", str(repo)],
            log,
        )
    else:
        print(f"==> models present in {repo}: {', '.join(MODELS)} (train more with python -m training)")
    _step(
        "exporting variants and TF Serving configs (existing variants are verified, not rebuilt)",
        [
            python,
            "-m",
            "export",
            "--repo",
            str(repo),
            "--test-size",
            "1000",
            "--latency-runs",
            "50",
            "--throughput-runs",
            "5",
        ],
        log,
    )
    evaluation = repo / "export_report.md"
    if evaluation.is_file():
        print(f"    report: {evaluation}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(os.environ.get("TENSORGATE_REPO", "models")))
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--modelserver-port", type=int, default=8500)
    parser.add_argument("--modelserver-rest-port", type=int, default=8501)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--no-serve", action="store_true", help="train and export, then exit")
    parser.add_argument(
        "--serve-only", action="store_true", help="serve the repository as it is (no training or export step)"
    )
    parser.add_argument(
        "--restart-backoff", type=float, default=0.5, help="first pause before restarting a dead server (doubles)"
    )
    parser.add_argument(
        "--log", type=Path, default=Path("logs/stack.log"), help="stderr of the training and export steps"
    )
    args = parser.parse_args(argv)
    repo: Path = args.repo
    python = sys.executable

    if not args.serve_only:
        _prepare(repo, python, args.log)
    if args.no_serve:
        return 0

    modelserver = [
        python,
        "-m",
        "serving.modelserver",
        f"--port={args.modelserver_port}",
        f"--rest_api_port={args.modelserver_rest_port}",
        f"--model_config_file={repo / 'modelserver.config'}",
        "--enable_batching",
        f"--batching_parameters_file={repo / 'batching_parameters.txt'}",
        f"--monitoring_config_file={repo / 'monitoring.config'}",
        "--file_system_poll_wait_seconds=5",
    ]
    gateway = [
        python,
        "-m",
        "serving.gateway",
        "--repo",
        str(repo),
        "--port",
        str(args.http_port),
        "--grpc-port",
        str(args.grpc_port),
        "--upstream",
        f"localhost:{args.modelserver_port}",
    ]
    environment = {**os.environ, "TENSORGATE_MODEL_CONFIG_FILE": str(repo / "modelserver.config")}
    configure_logging()
    children = [
        Supervised("model server", modelserver, backoff_s=args.restart_backoff),
        Supervised("gateway", gateway, env=environment, backoff_s=args.restart_backoff),
    ]
    signal.signal(signal.SIGTERM, _stop)
    try:
        started = time.monotonic()
        for child in children:
            print(f"\n==> starting the {child.name}\n    {' '.join(child.command)}", flush=True)
            child.start()
        _wait_ready(f"http://localhost:{args.http_port}/readyz", children, args.ready_timeout)
        print(f"    model server and gateway ready in {_elapsed(started)}", flush=True)
        print(examples(args.http_port, args.grpc_port), flush=True)
        # From here on a child that dies is restarted (with backoff); meanwhile the gateway answers 503
        # for what the model server served, and /readyz says which servables are missing.
        while True:
            for child in children:
                child.check()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            child.stop()


if __name__ == "__main__":
    sys.exit(main())
