"""Servable versions: which to load (version policies), their states as GetModelStatus reports them,
polling base paths for new versions, warmup, labels, and retiring old versions once idle.

Loads run in the manager's own thread (never on the event loop). A new version is loaded and warmed
before it becomes AVAILABLE; only then are versions the policy no longer wants marked UNLOADING, and
each is closed once its in-flight requests have finished, so a swap fails no request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from serving import protos
from serving.errors import InvalidInput, NotFound, ServingError
from serving.modelserver import runtimes
from serving.modelserver.metrics import Metrics

log = logging.getLogger("serving.modelserver")

_STATE = protos.ModelVersionStatus.DESCRIPTOR.enum_types_by_name["State"].values_by_name
START, LOADING, AVAILABLE, UNLOADING, END = (
    _STATE[n].number for n in ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
)


@dataclass(eq=False)
class ServableVersion:
    model_name: str
    version: int
    path: Path
    platform: str
    state: int = START
    error: ServingError | None = None
    model: runtimes.Model | None = None
    inflight: int = 0
    extras: dict[str, Any] = field(default_factory=dict)  # per-version caches (batchers) owned by callers
    identity: tuple[int, int] | None = None  # the version directory's (inode, ctime) when its load was tried

    @property
    def runtime(self) -> runtimes.Model:
        assert self.model is not None
        return self.model


@dataclass
class _Served:
    config: Any  # tensorflow.serving.ModelConfig
    versions: dict[int, ServableVersion] = field(default_factory=dict)


@dataclass(frozen=True)
class ManagerOptions:
    runtime: runtimes.RuntimeOptions = field(default_factory=runtimes.RuntimeOptions)
    prefer_tflite: bool = False
    enable_warmup: bool = True
    warmup_iterations: int = 1


def request_string(name: str, version: int | None) -> str:
    """TF Serving's ServableRequest::DebugString, used in its 'Servable not found' message."""
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"


def scan_versions(base_path: Path) -> dict[int, Path]:
    """Version directories under a base path: names made of digits (``00000123`` is version 123)."""
    try:
        entries = list(base_path.iterdir())
    except OSError:
        return {}
    return {int(entry.name): entry for entry in entries if entry.name.isdigit() and entry.is_dir()}


def directory_identity(path: Path) -> tuple[int, int] | None:
    """Tells a version directory from one published later under the same number (a rename makes a new
    inode or at least a new ctime), so a failed version that is replaced gets loaded again."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_ctime_ns


def aspired_versions(config: Any, available: dict[int, Path]) -> set[int]:
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(available)
    if choice == "specific":
        return {v for v in policy.specific.versions if v in available}
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return set(sorted(available, reverse=True)[:count])


class ServableManager:
    def __init__(
        self,
        options: ManagerOptions,
        metrics: Metrics,
        warmup: Callable[[ServableVersion], None] | None = None,
        on_unload: Callable[[ServableVersion], None] | None = None,
    ) -> None:
        self._options = options
        self._metrics = metrics
        self._warmup = warmup
        self._on_unload = on_unload
        self._models: dict[str, _Served] = {}
        self._lock = threading.Condition()
        self._reconcile_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._reported_empty: set[str] = set()

    # ---- configuration -------------------------------------------------------------------------

    def set_config(self, config: Any) -> None:
        """Replace the served set (start-up and HandleReloadConfigRequest) and load what it asks for.
        Blocks until every aspired version is AVAILABLE or has failed, as TF Serving does."""
        with self._reconcile_lock:
            wanted = {model.name: model for model in config.model_config_list.config}
            with self._lock:
                for name, model_config in wanted.items():
                    served = self._models.get(name)
                    if served is None:
                        self._models[name] = _Served(model_config)
                    else:
                        served.config = model_config
                removed = [name for name in self._models if name not in wanted]
            for name in removed:
                self._retire_model(name)
            self._reconcile_locked()

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def config_of(self, name: str) -> Any | None:
        with self._lock:
            served = self._models.get(name)
            return served.config if served else None

    # ---- polling -------------------------------------------------------------------------------

    def start_polling(self, interval_seconds: float) -> None:
        if interval_seconds <= 0 or self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.reconcile()
                except Exception:  # a poll must never kill the poller
                    log.exception("file system poll failed")

        self._poller = threading.Thread(target=loop, name="fs-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            versions = [v for served in self._models.values() for v in served.versions.values()]
        for version in versions:
            if version.model is not None:
                version.model.close()

    def reconcile(self) -> None:
        with self._reconcile_lock:
            self._reconcile_locked()

    def _reconcile_locked(self) -> None:
        with self._lock:
            served_items = list(self._models.items())
        for name, served in served_items:
            base = Path(served.config.base_path)
            on_disk = scan_versions(base)
            aspired = aspired_versions(served.config, on_disk)
            if not on_disk and not served.versions:
                if name not in self._reported_empty:  # once, not at every poll
                    log.warning("No versions of servable %s found under base path %s", name, base)
                    self._reported_empty.add(name)
            else:
                self._reported_empty.discard(name)
            to_load = []
            with self._lock:
                for version in sorted(aspired, reverse=True):
                    existing = served.versions.get(version)
                    if existing is not None and existing.state in (LOADING, AVAILABLE):
                        continue
                    if existing is not None and existing.error is not None:
                        # failed: retried only once a different directory is published under its number
                        if existing.identity == directory_identity(on_disk[version]):
                            continue
                        log.info("Servable %s version %d was published again; loading it", name, version)
                    platform = served.config.model_platform or "tensorflow"
                    served.versions[version] = ServableVersion(name, version, on_disk[version], platform)  # START
                    to_load.append(version)
            for version in to_load:
                self._load(served, name, version, on_disk[version])
            self._retire_unaspired(served, aspired)

    def _load(self, served: _Served, name: str, version: int, path: Path) -> None:
        with self._lock:
            entry = served.versions[version]
            entry.state = LOADING
            entry.identity = directory_identity(path)
        log.info("Loading servable: {name: %s version: %d} from %s", name, version, path)
        try:
            model = runtimes.load(entry.platform, path, self._options.runtime, self._options.prefer_tflite)
            entry.model = model
            entry.platform = model.platform
            if self._warmup is not None and self._options.enable_warmup:
                self._warmup(entry)
        except Exception as error:
            status = _load_status(error, path)
            with self._lock:
                entry.state, entry.error, entry.model = END, status, None
            self._metrics.load_attempt_count.inc(str(path), "FAIL")
            log.error("Loading servable: {name: %s version: %d} failed: %s", name, version, status.message)
            if entry.model is not None:
                entry.model.close()
            return
        with self._lock:
            entry.state = AVAILABLE
            self._lock.notify_all()
        self._metrics.load_attempt_count.inc(str(path), "OK")
        log.info("Successfully loaded servable version {name: %s version: %d} (%s)", name, version, entry.platform)

    def _retire_unaspired(self, served: _Served, aspired: set[int]) -> None:
        with self._lock:
            any_aspired_available = any(
                v.state == AVAILABLE for number, v in served.versions.items() if number in aspired
            )
            retire = [
                v
                for number, v in served.versions.items()
                if number not in aspired and v.state == AVAILABLE and (any_aspired_available or not aspired)
            ]
            for entry in retire:
                entry.state = UNLOADING
        for entry in retire:
            self._finish_unload(entry)

    def _retire_model(self, name: str) -> None:
        with self._lock:
            served = self._models.get(name)
            if served is None:
                return
            retire = [v for v in served.versions.values() if v.state == AVAILABLE]
            for entry in retire:
                entry.state = UNLOADING
        for entry in retire:
            self._finish_unload(entry)
        with self._lock:
            self._models.pop(name, None)

    def _finish_unload(self, entry: ServableVersion) -> None:
        log.info("Unloading servable version {name: %s version: %d}", entry.model_name, entry.version)
        with self._lock:
            while entry.inflight:
                self._lock.wait(timeout=1.0)
        if self._on_unload is not None:
            self._on_unload(entry)
        if entry.model is not None:
            entry.model.close()
        with self._lock:
            entry.state, entry.model = END, None
        log.info("Done unloading servable version {name: %s version: %d}", entry.model_name, entry.version)

    # ---- requests ------------------------------------------------------------------------------

    @contextmanager
    def handle(self, name: str, version: int | None = None, label: str | None = None) -> Iterator[ServableVersion]:
        """The version a request names (latest AVAILABLE by default), held until the request is done."""
        entry = self._acquire(name, version, label)
        try:
            yield entry
        finally:
            with self._lock:
                entry.inflight -= 1
                if not entry.inflight:
                    self._lock.notify_all()

    def _acquire(self, name: str, version: int | None, label: str | None) -> ServableVersion:
        with self._lock:
            served = self._models.get(name)
            if label:
                labels = served.config.version_labels if served else {}
                if label not in labels:
                    raise InvalidInput(f"Unrecognized servable version label: {label}")
                version = labels[label]
            if served is not None:
                if version is None:
                    ready = [v for v in served.versions.values() if v.state == AVAILABLE]
                    entry = max(ready, key=lambda v: v.version) if ready else None
                else:
                    candidate = served.versions.get(version)
                    entry = candidate if candidate is not None and candidate.state == AVAILABLE else None
                if entry is not None:
                    entry.inflight += 1
                    return entry
            # NOT_FOUND also while a version is still loading: the manager only hands out AVAILABLE
            # servables (basic_manager.cc GetServableHandle; tensorflow_model_server_test.py's
            # WaitForServerReady relies on it).
            raise NotFound(f"Servable not found for request: {request_string(name, version)}")

    def status(self, name: str, version: int | None = None) -> list[tuple[int, int, ServingError | None]]:
        """(version, state, error) newest first, as GetModelStatus lists them."""
        with self._lock:
            served = self._models.get(name)
            versions = dict(served.versions) if served else {}
        if not versions:
            raise NotFound(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in versions:
                raise NotFound(f"Could not find version {version} of model {name}")
            versions = {version: versions[version]}
        return [(v.version, v.state, v.error) for _, v in sorted(versions.items(), reverse=True)]

    def failed_new_models(self, known: set[str]) -> list[str]:
        """Models not in ``known`` that have versions but none AVAILABLE after a reload, as
        ServableId::DebugString prints them (``{name: m version: 3}``)."""
        with self._lock:
            failed = []
            for name, served in sorted(self._models.items()):
                versions = served.versions.values()
                if name in known or not versions or any(v.state == AVAILABLE for v in versions):
                    continue
                failed += [f"{{name: {name} version: {v.version}}}" for v in versions if v.error is not None]
            return failed

    def available(self) -> list[ServableVersion]:
        with self._lock:
            return [v for s in self._models.values() for v in s.versions.values() if v.state == AVAILABLE]


def _load_status(error: Exception, path: Path) -> ServingError:
    if isinstance(error, ServingError):
        return error
    message = str(error)
    if isinstance(error, runtimes.LoadError) and message.startswith("Could not find"):
        failure = ServingError(message)
        failure.grpc_code = grpc.StatusCode.NOT_FOUND
        return failure
    failure = ServingError(message or f"Failed to load {path}")
    failure.grpc_code = grpc.StatusCode.UNKNOWN if isinstance(error, runtimes.LoadError) else grpc.StatusCode.INTERNAL
    return failure
