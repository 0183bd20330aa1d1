"""The processes of a scale-out run: model servers on 127.0.0.2, 127.0.0.3 ... that share one gRPC
port behind one DNS name (a headless Service's pods), and gateways that resolve that name.

Each model server is ``python -m serving.modelserver --bind_address=127.0.0.N``: like a pod, it has
its own address and the Service's port. A member is "ready" once its model is AVAILABLE; only then is
it published in DNS (as Kubernetes lists only ready pods' addresses).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest import procs
from loadtest.reliability.common import Context, Server
from loadtest.scaleout.dnsserver import DnsServer

SERVICE = "models.scaleout.test"  # the headless Service's name
METRICS_PATH = "/monitoring/prometheus/metrics"


def shared_port(addresses: list[str], attempts: int = 50) -> int:
    """A port that is free on every address (the Service's port, the same on each pod)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        with contextlib.ExitStack() as stack:
            try:
                for address in addresses[1:]:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {addresses}")


@dataclass
class Member:
    """One model server: a pod behind the Service."""

    address: str  # 127.0.0.N
    server: Server  # rest: http://127.0.0.N:REST, grpc: 127.0.0.N:PORT (the gateway's target label)

    @property
    def target(self) -> str:
        return self.server.grpc

    def predict_calls(self, servable: str = "cnn") -> float:
        """gRPC Predict calls this server has answered (its own ``request_latency`` count)."""
        text = httpx.get(self.server.rest + METRICS_PATH, timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == ":tensorflow:serving:request_latency_count"
                    and labels.get("API") == "predict"
                    and labels.get("entrypoint") == "GRPC"
                    and labels.get("model_name") == servable
                ):
                    total += sample.value
        return total


class Fleet:
    """The DNS server, the model servers (members) and what the gateways' target is."""

    def __init__(self, ctx: Context, repo: Path, addresses: list[str]) -> None:
        self.ctx, self.repo = ctx, repo
        self.port = shared_port(addresses)
        self.dns = DnsServer().start()
        self.members: dict[str, Member] = {}
        self._started: list[procs.Managed] = []

    @property
    def target(self) -> str:
        """The gateways' upstream: ``dns://<this DNS server>/<service>:<port>``."""
        return f"dns://127.0.0.1:{self.dns.port}/{SERVICE}:{self.port}"

    def start(self, address: str) -> Member:
        rest = procs.free_port()
        args = [sys.executable, "-m", "serving.modelserver", f"--port={self.port}", f"--rest_api_port={rest}"]
        args += [f"--bind_address={address}", f"--model_config_file={self.repo / 'models.config'}"]
        args += [f"--monitoring_config_file={self.repo / 'monitoring.config'}", "--file_system_poll_wait_seconds=30"]
        name = f"modelserver-{address}"
        managed = procs.Managed(name, args, self.ctx.log_path(name), {"CUDA_VISIBLE_DEVICES": ""})
        self._started.append(managed)
        member = Member(address, Server(managed, f"http://{address}:{rest}", f"{address}:{self.port}"))
        self.members[address] = member
        return member

    def wait_ready(self, member: Member, servables: list[str], timeout: float = 240.0) -> None:
        def ready() -> bool:
            for servable in servables:
                answer = httpx.get(f"{member.server.rest}/v1/models/{servable}", timeout=2).json()
                if not any(v.get("state") == "AVAILABLE" for v in answer.get("model_version_status", [])):
                    return False
            return True

        member.server.managed.wait_ready(ready, timeout)

    def publish(self, addresses: list[str]) -> float:
        """The Service's answer from now on; the wall-clock time of the change."""
        self.dns.set(SERVICE, addresses)
        return time.time()

    def close(self) -> None:
        for managed in reversed(self._started):
            managed.stop(grace=5.0)
        self.dns.close()


@dataclass
class GatewayWatch:
    """Polls one gateway's /metrics every ``period`` s: OK Predict calls and health per target."""

    gateway: Server
    period: float = 0.1
    samples: list[tuple[float, dict[str, float], dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(self.period):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    text = client.get(self.gateway.rest + "/metrics").text
                    self.samples.append((time.time(), *read_targets(text)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def calls(self, at: float | None = None) -> dict[str, float]:
        """OK Predict calls per target at the last sample before ``at`` (now by default)."""
        chosen: dict[str, float] = {}
        for t, calls, _ in list(self.samples):
            if at is not None and t > at:
                break
            chosen = calls
        return dict(chosen)

    def wait(self, condition: str, target: str, since: float, timeout: float) -> float | None:
        """The first sample time after ``since`` where ``target`` has a call after ``since``
        (``condition="called"``), is ejected (``"ejected"``) or is gone from the targets (``"gone"``)."""
        before = self.calls(since).get(target, 0.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, calls, healthy in list(self.samples):
                if t < since:
                    continue
                if (
                    (condition == "called" and calls.get(target, 0.0) > before)
                    or (condition == "ejected" and healthy.get(target) == 0.0)
                    or (condition == "gone" and target not in healthy)
                ):
                    return t
            time.sleep(self.period)
        return None


def read_targets(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """(OK Predict calls per target, health per listed target) from a gateway's /metrics."""
    calls: dict[str, float] = {}
    healthy: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            target = sample.labels.get("target")
            if target is None:
                continue
            if sample.name == "tensorgate_gateway_upstream_target_healthy":
                healthy[target] = sample.value
            elif (
                sample.name == "tensorgate_gateway_upstream_calls_total"
                and sample.labels.get("method") == "Predict"
                and sample.labels.get("code") == "OK"
            ):
                calls[target] = calls.get(target, 0.0) + sample.value
    return calls, healthy


def gateway_counter(gateway: Server, name: str) -> float:
    """The sum of a counter's samples on a gateway's /metrics (e.g. ``tensorgate_gateway_upstream_retries``)."""
    text = httpx.get(gateway.rest + "/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
        if sample.name == name + "_total"
    )
