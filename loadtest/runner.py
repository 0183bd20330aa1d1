"""The benchmark run: start each system under test, load it with Locust step by step, stop it.

Targets are grouped by the servers they need (a baseline alone; the model server and the gateway
together), so each server starts once. A target whose server fails to start, or whose first request
is not a correct prediction, is recorded as failed with the reason and its log tail; the run goes on.
Whatever happens (an error, Ctrl-C, SIGTERM), every process the run started is stopped.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest import machine, payloads, procs, profile, report
from loadtest import targets as servers
from loadtest.targets import API_KEY, CEILING, ENSEMBLE_MEMBERS, GATEWAY_CPU, TARGETS, Server, Target, latest

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STEP_OVERHEAD_S = 4.0  # Locust's start and stop around each step, for the time-left estimate
PROFILED = ("gateway-rest", "gateway-grpc")  # with --profile: py-spy on every server at their largest step


@dataclass
class Settings:
    repo: Path
    out: Path
    targets: list[str]
    users: list[int]
    duration: float
    quick: bool = False
    modelserver_batching: bool = True
    modelserver_flags: list[str] = field(default_factory=list)  # extra flags, e.g. thread counts
    start_timeout: float = 240.0
    profile: bool = False
    workers: int = 0  # 0: Locust in one process; N: one master and N worker processes
    cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "tensorgate" / "loadtest")
    log: Callable[[str], None] = print


class Progress:
    def __init__(self, settings: Settings, steps: int) -> None:
        self.settings, self.total, self.done = settings, steps, 0
        self.started = time.monotonic()

    def step(self, target: str, users: int, note: str = "") -> None:
        self.done += 1
        left = (self.total - self.done + 1) * (self.settings.duration + STEP_OVERHEAD_S)
        elapsed = time.monotonic() - self.started
        self.settings.log(
            f"[{self.done:>2}/{self.total}] {target:<22} {users:>3} users {note:<8} "
            f"elapsed {elapsed / 60:4.1f} min, about {left / 60:4.1f} min of load left"
        )


def steps_for(target: Target, users: list[int]) -> list[int]:
    """The user steps of a target; batched targets (a few users saturate 2 cores) get 1, 2, 4 ... up to
    their cap when the run has several steps."""
    if not target.max_users:
        return users
    if len(users) > 1:
        return [u for u in (1, 2, 4, 8, 16) if u <= target.max_users]
    return [min(users[0], target.max_users)]


def probe(target: Target, server: Server) -> None:
    """One real request: the target must answer a correctly shaped prediction, else it is not measured."""
    kind = target.payload
    if target.protocol == "grpc" and kind not in payloads.GRPC_KINDS:
        kind = "grpc"
    payload = payloads.build(kind, target.servable, target.batch, 1)[0]
    headers = {"x-api-key": API_KEY} if target.server == "gateway" else {}
    if target.protocol == "grpc":
        import grpc

        from serving import protos

        v2 = kind == "v2-grpc"
        with grpc.insecure_channel(server.grpc) as channel:
            call = channel.unary_unary(
                payloads.GRPC_METHODS[kind],
                request_serializer=None,
                response_deserializer=(protos.ModelInferResponse if v2 else protos.PredictResponse).FromString,
            )
            for _ in range(10):
                answer = call(payload.body, timeout=30, metadata=tuple(headers.items()))
            (payloads.v2_grpc_class_ids if v2 else payloads.grpc_class_ids)(answer, target.batch)
        return
    path = payloads.path_for(kind, target.servable)
    for _ in range(10):
        response = httpx.post(
            server.rest + path,
            content=payload.body,
            headers={"Content-Type": payload.content_type, **headers, **dict(payload.headers)},
            timeout=30,
        )
        if response.status_code != 200:
            raise payloads.AnswerError(f"HTTP {response.status_code}: {response.text[:300]}")
    if kind.startswith("v2-"):
        length = response.headers.get("inference-header-content-length")
        payloads.v2_class_ids(response.content, length, target.batch)
    else:
        payloads.rest_class_ids(response.content, target.batch)


def locust_step(
    target: Target,
    server: Server,
    watched: dict[str, procs.Managed],
    users: int,
    settings: Settings,
    prefix: Path,
    target_rps: float = 0.0,
    profilers: dict[str, procs.Managed] | None = None,
) -> dict[str, Any]:
    """One Locust run against ``server``. ``profilers`` (py-spy, with --profile) are measured apart, so
    their CPU is neither a server's nor counted as other processes busying the machine."""
    profilers = {f"profiler-{name}": managed for name, managed in (profilers or {}).items()}
    host = server.grpc if target.protocol == "grpc" else server.rest
    locust_args = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    options = ["--servable", target.servable, "--payload", target.payload, "--batch", str(target.batch)]
    if target.server == "gateway":
        options += ["--api-key", API_KEY]
    if target_rps:
        options += ["--target-rps", f"{target_rps:.1f}"]
    args = [*locust_args, "--headless", "-u", str(users), "-r", str(users), "-t", f"{settings.duration:g}s"]
    args += ["--host", host, "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary"]
    args += ["--exit-code-on-error", "0", *options]
    workers: dict[str, procs.Managed] = {}
    if settings.workers:
        port = procs.free_port()
        args += ["--master", "--expect-workers", str(settings.workers), "--expect-workers-max-wait", "120"]
        args += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        # the same options on each worker: its payloads are encoded at start, before the master's arrive
        worker_args = [*locust_args, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
        worker_args += ["--host", host, "-u", str(users), *options, target.user_class]
        for index in range(1, settings.workers + 1):
            name = f"locust-worker-{index}"
            workers[name] = procs.Managed(name, worker_args, prefix.with_name(f"{prefix.name}-worker-{index}.log"))
    locust = procs.Managed("locust", [*args, target.user_class], prefix.with_suffix(".log"))
    try:
        with procs.Monitor({"locust": locust, **workers, **watched, **profilers}) as monitor:
            try:
                locust.process.wait(settings.duration + 120 + (120 if workers else 0))
            except subprocess.TimeoutExpired:
                locust.stop()
                raise RuntimeError(f"Locust did not finish:\n{procs.tail(locust.log)}") from None
    finally:
        locust.stop()
        for worker in workers.values():
            worker.stop(grace=5.0)
    step = report.read_locust(prefix, target.batch)
    since = step.get("window_start") or 0.0  # the first request: Locust's own start is not counted
    cpu = monitor.cpu(since)
    by_process = {
        "master" if name == "locust" else name.removeprefix("locust-"): cpu.pop(name) for name in ["locust", *workers]
    }
    peak_rss = sum(monitor.peak_rss.pop(name) for name in ["locust", *workers])
    profiler_cpu = {}
    for name in profilers:  # apart from the servers: CPU reported on its own, memory not at all
        profiler_cpu[name.removeprefix("profiler-")] = cpu.pop(name)
        monitor.peak_rss.pop(name)
    step.update(
        users=users,
        target_rps=target_rps or None,
        measured_s=monitor.seconds(since),
        locust_cpu_s=sum(by_process.values()),
        locust_cpu_by_process=by_process,
        locust_workers=len(workers),
        locust_peak_rss_mib=peak_rss / 2**20,
        server_cpu_s=cpu,
        server_peak_rss_mib={name: rss / 2**20 for name, rss in monitor.peak_rss.items()},
        system_busy_cpu_s=monitor.system_busy(since),
        profiler_cpu_s=profiler_cpu,
    )
    if not step["requests"]:
        step["failure_messages"] = [f"no request finished; Locust's log ends: {procs.tail(locust.log, 8)}"]
    tracked = step["locust_cpu_s"] + sum(cpu.values()) + sum(profiler_cpu.values())
    step["other_cpu_s"] = max(0.0, step["system_busy_cpu_s"] - tracked)
    return step


class Run:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.out / time.strftime("%Y%m%d-%H%M%S")
        suffix = 1
        while self.dir.exists():
            suffix += 1
            self.dir = settings.out / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        self.logs, self.raw = self.dir / "logs", self.dir / "locust"
        procs.run_mark = str(self.dir)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.raw.mkdir(parents=True, exist_ok=True)
        selected = [TARGETS[name] for name in settings.targets if name in TARGETS]
        self.selected = selected
        step_count = sum(len(steps_for(t, settings.users)) for t in selected)
        step_count += 1 if "gateway-rest" in settings.targets else 0
        self.progress = Progress(settings, step_count)
        self.results: dict[str, Any] = {
            "machine": machine.describe(),
            "settings": {
                "repo": str(settings.repo),
                "targets": settings.targets,
                "users": settings.users,
                "duration_s": settings.duration,
                "quick": settings.quick,
                "modelserver_batching": settings.modelserver_batching,
                "modelserver_flags": settings.modelserver_flags,
                "profile": settings.profile,
                "locust_workers": settings.workers,
            },
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "targets": {},
            "ceiling": None,
            "gateway_cpu": None,
            "one_caller": None,
        }

    def fail(self, target: Target, status: str, reason: str) -> None:
        self.settings.log(f"  {target.name}: {status}: {reason.splitlines()[0] if reason else ''}")
        self.progress.total -= len(steps_for(target, self.settings.users)) + (target.name == "gateway-rest")
        self.results["targets"][target.name] = {
            **self.describe(target),
            "status": status,
            "reason": reason,
            "steps": [],
        }

    @staticmethod
    def describe(target: Target) -> dict[str, Any]:
        return {
            "server": target.server,
            "protocol": target.protocol,
            "servable": target.servable,
            "payload": ("v2-grpc" if target.payload == "v2-grpc" else "protobuf")
            if target.protocol == "grpc"
            else target.payload,
            "batch": target.batch,
            "group": target.group,
        }

    def measure(self, target: Target, server: Server, watched: dict[str, procs.Managed]) -> None:
        try:
            probe(target, server)
        except Exception as error:  # any answer that is not a prediction: report it, go on
            self.fail(target, "failed", f"first request: {error}")
            return
        entry: dict[str, Any] = {**self.describe(target), "status": "ok", "reason": "", "steps": []}
        self.results["targets"][target.name] = entry
        steps = steps_for(target, self.settings.users)
        for users in steps:
            self.progress.step(target.name, users)
            prefix = self.raw / f"{target.name}-u{users}"
            profiling = self.settings.profile and target.name in PROFILED and users == steps[-1]
            samplers = self.start_profiles(watched, prefix) if profiling else {}
            profilers = {name: sampler for name, (sampler, _) in samplers.items()}
            step = locust_step(target, server, watched, users, self.settings, prefix, profilers=profilers)
            entry["steps"].append(step)
            if samplers:
                entry["profile"] = {"users": users, **self.finish_profiles(samplers)}
        if target.name == "gateway-rest" and entry["steps"]:
            peak = max(step["requests_per_s"] for step in entry["steps"])
            users = max(max(self.settings.users), 8)
            self.progress.step(target.name, users, "70% load")
            prefix = self.raw / f"{target.name}-u{users}-70pct"
            step = locust_step(target, server, watched, users, self.settings, prefix, target_rps=0.7 * peak)
            entry["at_70pct"] = {**step, "peak_requests_per_s": peak}

    def start_profiles(self, watched: dict[str, procs.Managed], prefix: Path) -> dict[str, tuple[Any, Path]]:
        samplers = {}
        for name, managed in watched.items():
            raw = prefix.parent.parent / "profiles" / f"{prefix.name}-{name}.txt"
            raw.parent.mkdir(exist_ok=True)
            sampler = profile.start(name, managed.pid, self.settings.duration, raw)
            if sampler is None:
                self.settings.log("  --profile: py-spy is not installed (pip install py-spy); no profile")
                return {}
            samplers[name] = (sampler, raw)
        return samplers

    def finish_profiles(self, samplers: dict[str, tuple[Any, Path]]) -> dict[str, str]:
        summaries = {}
        for name, (sampler, raw) in samplers.items():
            try:
                sampler.process.wait(30)
            except subprocess.TimeoutExpired:
                sampler.stop()
            sampler.stop()
            summaries[name] = profile.summarise(raw) if raw.is_file() else f"no profile: {procs.tail(sampler.log, 5)}"
        return summaries

    def group(self, names: list[Target], start: Callable[[], dict[str, Server]]) -> None:
        if not names:
            return
        try:
            started = start()
        except Exception as error:
            reason = str(error)
            for target in names:
                self.fail(target, "not started", reason)
            return
        try:
            watched = {name: s.managed for name, s in started.items()}
            for target in names:
                server = started[target.server]
                if target.server == "gateway" and target.servable not in self.gateway_servables:
                    self.fail(target, "skipped", f"no {target.servable} servable in {self.settings.repo}")
                    continue
                self.measure(target, server, watched)
            if "modelserver" in started and "gateway" in started:
                self.one_caller(started["modelserver"], started["gateway"])
        finally:
            for server in started.values():
                server.managed.stop()

    def execute(self) -> Path:
        settings = self.settings
        settings.log(f"results: {self.dir}")
        onnx: Path | None = None
        needs_onnx = any(t.server in ("handmade", "peer") or t.servable == "cnn_onnx" for t in self.selected)
        if needs_onnx:
            try:
                onnx = servers.onnx_model(settings.repo, settings.cache, self.logs / "tf2onnx.log")
            except Exception as error:
                settings.log(f"ONNX model unavailable ({error}); see {self.logs / 'tf2onnx.log'}")
        self.gateway_servables: set[str] = set()
        for kind in ("naive", "handmade", "peer"):
            chosen = [t for t in self.selected if t.server == kind]

            def start_baseline(kind: str = kind) -> dict[str, Server]:
                if kind != "naive" and onnx is None:
                    raise RuntimeError("no ONNX model (conversion failed)")
                settings.log(f"starting {kind}")
                return {
                    kind: servers.start_baseline(kind, settings.repo, onnx or Path(), self.logs, settings.start_timeout)
                }

            self.group(chosen, start_baseline)
        self.group([t for t in self.selected if t.server in ("modelserver", "gateway")], lambda: self.start_stack(onnx))
        if CEILING in settings.targets:
            self.ceiling()
        if GATEWAY_CPU in settings.targets:
            self.gateway_cpu()
        return self.dir

    def one_caller(self, model_server: Server, gateway: Server) -> None:
        """The added-p50 goal from interleaved rounds of one plain caller (``loadtest.one_user``'s clients)
        instead of two Locust steps minutes apart: a single 1-user step moves by more than the 1 ms
        being judged (docs/loadtest.md, "one caller without Locust")."""
        settings = self.settings
        ok = {n for n, t in self.results["targets"].items() if t.get("status") == "ok"}
        if 1 not in settings.users or "modelserver-grpc" not in ok or not ok & {"gateway-rest", "gateway-grpc"}:
            return
        from loadtest import one_user

        requests, rounds = (200, 2) if settings.quick else (1000, 4)
        settings.log(f"one caller, no Locust: {rounds} interleaved rounds of {requests} requests per target")
        image = payloads.test_images(1)[0]
        grpc_body, _ = payloads.encode("grpc", image)
        instances, json_type = payloads.encode("instances", image)
        callers = {"modelserver-grpc": one_user.grpc_caller(model_server.grpc, grpc_body)}
        if "gateway-rest" in ok:
            path = payloads.path_for("instances", "cnn")
            callers["gateway-rest"] = one_user.rest_caller(gateway.rest, path, instances, json_type, API_KEY)
        if "gateway-grpc" in ok:
            callers["gateway-grpc"] = one_user.grpc_caller(gateway.grpc, grpc_body, API_KEY)
        try:
            measured = one_user.interleaved(callers, requests, rounds, warmup=100)
        except Exception as error:  # a failed call: say so in the report, keep the Locust figures
            self.results["one_caller"] = {"error": str(error)[:300]}
            return
        base = measured["modelserver-grpc"]
        self.results["one_caller"] = {
            "requests": requests,
            "rounds": rounds,
            "targets": {name: one_user.summarise(value) for name, value in measured.items()},
            "added_p50": {
                name: one_user.added_p50(value, base) for name, value in measured.items() if name != "modelserver-grpc"
            },
        }

    def start_stack(self, onnx: Path | None) -> dict[str, Server]:
        wanted = {t.servable for t in self.selected if t.server in ("modelserver", "gateway")}
        if "vote" in wanted:
            wanted = (wanted - {"vote"}) | set(ENSEMBLE_MEMBERS)
        if onnx is None:
            wanted.discard("cnn_onnx")
        int8 = None
        if "cnn_int8" in wanted:
            try:
                int8 = servers.int8_model(self.settings.repo, self.settings.cache, self.logs / "export-int8.log")
            except Exception as error:
                self.settings.log(f"no cnn_int8 variant: {error}")
        onnx_path = onnx or Path("/nonexistent/1/model.onnx")
        repo, platforms = servers.work_repo(self.settings.repo, onnx_path, self.dir / "repo", wanted, int8)
        names = sorted(platforms)
        self.gateway_servables = set(names) | ({"vote"} if set(ENSEMBLE_MEMBERS) <= set(names) else set())
        self.settings.log(f"starting model server ({', '.join(names)}) and gateway")
        timeout = self.settings.start_timeout
        model_server = servers.start_modelserver(
            repo / "models.config",
            names,
            self.logs,
            self.settings.modelserver_batching,
            timeout,
            self.settings.modelserver_flags,
        )
        try:
            gateway = servers.start_gateway(repo, model_server.grpc, names, self.logs, timeout)
        except Exception:
            model_server.managed.stop()
            raise
        return {"modelserver": model_server, "gateway": gateway}

    def ceiling(self) -> None:
        duration = max(2.0, self.settings.duration)
        self.settings.log(f"in-process ceiling: the model server's TensorFlow runtime at batch 64, {duration:g} s")
        model = latest(self.settings.repo / "cnn")
        command = [sys.executable, "-m", "loadtest.ceiling", "--model", str(model), "--duration", str(duration)]
        log = self.logs / "ceiling.log"
        with log.open("wb") as stream:
            done = subprocess.run(command, cwd=procs.ROOT, stdout=subprocess.PIPE, stderr=stream, timeout=600)
        try:
            self.results["ceiling"] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.results["ceiling"] = {"error": f"exit {done.returncode}: {procs.tail(log)}"}

    def gateway_cpu(self) -> None:
        # One round in each of three fresh gateway processes: one process's figure can differ from the
        # next one's by more than a change being measured (docs/loadtest.md, 2026-12-03, AMD EPYC).
        requests = 1000 if self.settings.quick else 4000
        self.settings.log(
            f"gateway CPU per request against the fake upstream: {requests} requests in each of 3 gateway processes"
        )
        out, log = self.dir / "gateway_cpu.json", self.logs / "gateway_cpu.log"
        command = [sys.executable, "-m", "loadtest.gateway_cpu", "--requests", str(requests), "--out", str(out)]
        command += ["--connections", "1,32", "--processes", "3", "--rounds", "1"]
        with log.open("wb") as stream:
            done = subprocess.run(command, cwd=procs.ROOT, stdout=stream, stderr=subprocess.STDOUT, timeout=900)
        if done.returncode == 0 and out.is_file():
            self.results["gateway_cpu"] = json.loads(out.read_text())
        else:
            self.results["gateway_cpu"] = {"error": f"exit {done.returncode}: {procs.tail(log)}"}

    def finish(self, interrupted: bool) -> None:
        self.results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.results["interrupted"] = interrupted
        self.results["machine"]["load_average_end"] = machine.load_average()
        report.write(self.results, self.dir)
        self.settings.log(f"report: {self.dir / 'report.md'}")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(settings: Settings) -> Path:
    previous = signal.signal(signal.SIGTERM, _terminate)
    # a shell starting us in the background sets SIGINT to ignored, and Python keeps that: Ctrl-C (or
    # kill -INT) must still stop the run and everything it started
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    run = Run(settings)
    interrupted = False
    try:
        run.execute()
    except KeyboardInterrupt:
        interrupted = True
        settings.log("interrupted: stopping every process started, writing what was measured")
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        run.finish(interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return run.dir
