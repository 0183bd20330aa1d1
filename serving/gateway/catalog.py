"""What the gateway knows about servables: where each lives, its labels, and its state upstream.

Servables come from the config (``servables``) or else from ``model_config_file``, by default the
repository's ``models.config`` (TF Serving's model_config_list text format). State comes from polling
``GetModelStatus`` on each servable's upstream; readiness means every servable has an AVAILABLE
version. Labels come from the repository when the gateway has one (``assets.extra/model_card.json``
``labels``, else the SavedModel asset ``labels.txt``); otherwise labels are the class numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from google.protobuf import text_format

from serving import protos
from serving.errors import GRPC_CODE_BY_NUMBER, ServingError
from serving.gateway.config import ConfigError, Settings
from serving.gateway.context import CallContext
from serving.gateway.metrics import Metrics
from serving.gateway.upstream import UpstreamPool

log = logging.getLogger("tensorgate.gateway.catalog")

STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
AVAILABLE = 30


def _code_name(number: int) -> str:
    code = GRPC_CODE_BY_NUMBER.get(number)
    return code.name if code is not None else str(number)


def platforms_from_config(path: Path) -> dict[str, str]:
    """Servable name -> model_platform (tensorflow, tflite, onnx ...) in a model_config_list file."""
    if not path.is_file():
        return {}
    config = protos.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as error:
        raise ConfigError(f"model_config_file: {path} is not a model_config_list: {error}") from None
    return {model.name: model.model_platform for model in config.model_config_list.config}


def read_labels(repo: Path, servable: str, version: str) -> list[str] | None:
    version_dir = repo / servable / version
    card = version_dir / "assets.extra" / "model_card.json"
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        labels = orjson.loads(card.read_bytes()).get("labels")
        if isinstance(labels, list) and labels:
            return [str(label) for label in labels]
    with contextlib.suppress(OSError):
        lines = (version_dir / "assets" / "labels.txt").read_text(encoding="utf-8").splitlines()
        labels = [line.strip() for line in lines if line.strip()]
        if labels:
            return labels
    return None


@dataclass
class ServableState:
    versions: dict[str, str] = field(default_factory=dict)  # version -> state name
    # version -> TF Serving's status of it ({"error_code": "NOT_FOUND", "error_message": ...}), as its
    # GET /v1/models/<name> prints it: a version that failed to load says why
    statuses: dict[str, dict[str, str]] = field(default_factory=dict)
    error: str | None = "not polled yet"
    checked_at: float = 0.0

    @property
    def available(self) -> list[str]:
        return [version for version, state in self.versions.items() if state == "AVAILABLE"]


class Catalog:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._pool: UpstreamPool | None = None
        self._metrics = metrics
        self.repo = settings.repo if settings.repo is not None and settings.repo.is_dir() else None
        config_file = settings.model_config_file or (self.repo / "models.config" if self.repo else None)
        try:  # the platforms are what v2 model metadata reports
            self.platforms = platforms_from_config(config_file) if config_file else {}
        except ConfigError:
            if not settings.servables:
                raise
            self.platforms = {}  # servables named in the config: the file only lends platform names
        names = dict(settings.servables) or dict.fromkeys(self.platforms, settings.default_upstream)
        self.upstream_of: dict[str, str] = names
        self.states: dict[str, ServableState] = {name: ServableState() for name in names}
        self._labels: dict[tuple[str, str], list[str] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[bool], Awaitable[None]]] = []  # told when readiness flips
        self._was_ready: bool | None = None
        self._check_references()

    def _check_references(self) -> None:
        known = set(self.upstream_of)
        if not known:
            return  # nothing declared: references pass through to the default upstream
        for route_name, route in self._settings.routes.items():
            for servable in [*route.split, *([route.shadow] if route.shadow else [])]:
                if servable not in known:
                    raise ConfigError(f"routes.{route_name}: unknown servable {servable!r} (known: {sorted(known)})")
        for ensemble_name, ensemble in self._settings.ensembles.items():
            for servable in ensemble.members:
                if servable not in known and servable not in self._settings.routes:
                    raise ConfigError(
                        f"ensembles.{ensemble_name}.members: unknown servable {servable!r} (known: {sorted(known)})"
                    )

    def upstream_for(self, servable: str) -> str:
        return self.upstream_of.get(servable, self._settings.default_upstream)

    def labels(self, servable: str, version: str, width: int) -> list[str]:
        labels = self._labels.get((servable, version))
        if labels is None and (servable, version) not in self._labels and self.repo is not None:
            labels = read_labels(self.repo, servable, version)  # first sight only; polled versions are preloaded
            self._labels[(servable, version)] = labels
        if labels is None or len(labels) != width:
            return [str(index) for index in range(width)]
        return labels

    def readiness(self) -> tuple[bool, str]:
        if not self.states:
            return False, "no servables known: set servables, model_config_file, or a repo with models.config"
        problems = []
        for name, state in self.states.items():
            if not state.available:
                problems.append(f"{name}: {state.error or 'no AVAILABLE version'}")
        return (not problems), "; ".join(problems)

    def raw_labels(self, servable: str, version: str) -> list[str] | None:
        return self._labels.get((servable, version))

    def start(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._task = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll_forever(self) -> None:
        period = self._settings.timeouts.status_poll_s
        while True:
            await asyncio.gather(*(self.poll(name) for name in self.states))
            ready, _ = self.readiness()
            if ready != self._was_ready:
                self._was_ready = ready
                for listener in self.listeners:
                    await listener(ready)
            await asyncio.sleep(period if ready else min(period, 0.2))

    async def poll(self, servable: str) -> None:
        request = protos.GetModelStatusRequest()
        request.model_spec.name = servable
        call = CallContext(request_id=f"status-poll-{servable}", deadline=time.monotonic() + 2.0)
        state = self.states[servable]
        if self._pool is None:
            raise RuntimeError("poll() before start()")
        try:
            response = await self._pool[self.upstream_for(servable)].call(
                "GetModelStatus", request, call, servable, limit=False
            )
        except ServingError as error:
            state.versions, state.statuses, state.error = {}, {}, error.message
        else:
            state.versions = {
                str(status.version): STATE_NAMES.get(status.state, str(status.state))
                for status in response.model_version_status
            }
            state.statuses = {
                str(status.version): {
                    "error_code": _code_name(status.status.error_code),
                    "error_message": status.status.error_message,
                }
                for status in response.model_version_status
            }
            state.error = None
            await self._preload_labels(servable, state.available)
        state.checked_at = time.time()
        self._metrics.servable_available.labels(servable).set(1 if state.available else 0)

    async def _preload_labels(self, servable: str, versions: list[str]) -> None:
        if self.repo is None:
            return
        for version in versions:
            if (servable, version) not in self._labels:
                self._labels[(servable, version)] = await asyncio.to_thread(read_labels, self.repo, servable, version)
