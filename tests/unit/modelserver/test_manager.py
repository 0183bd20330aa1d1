from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from serving import protos
from serving.errors import InvalidInput, NotFound
from serving.modelserver import manager as manager_module
from serving.modelserver import runtimes
from serving.modelserver.app import _poll_config_file
from serving.modelserver.manager import AVAILABLE, END, LOADING, UNLOADING, ManagerOptions, ServableManager
from serving.modelserver.metrics import Metrics


class FakeModel(runtimes.Model):
    platform = "fake"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signatures = {}
        self.closed = False

    def predict(self, signature, inputs, output_aliases):
        return {}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> dict[str, threading.Event]:
    gates: dict[str, threading.Event] = {}

    def load(platform, version_dir: Path, options, prefer_tflite=False):
        if (version_dir / "broken").exists():
            raise runtimes.LoadError(f"Could not find model files in {version_dir}")
        gate = gates.get(version_dir.name)
        if gate is not None:
            gate.wait(10)
        return FakeModel(version_dir)

    monkeypatch.setattr(manager_module.runtimes, "load", load)
    return gates


def config_for(base: Path, **labels: int):
    config = protos.ModelServerConfig()
    model = config.model_config_list.config.add(name="m", base_path=str(base), model_platform="tensorflow")
    for label, version in labels.items():
        model.version_labels[label] = version
    return config


def test_latest_version_serves_and_old_one_retires(tmp_path: Path, fake_runtime) -> None:
    (tmp_path / "1").mkdir()
    manager = ServableManager(ManagerOptions(), Metrics())
    manager.set_config(config_for(tmp_path))
    with manager.handle("m") as entry:
        assert entry.version == 1
    (tmp_path / "2").mkdir()
    manager.reconcile()
    assert manager.status("m") == [(2, AVAILABLE, None), (1, END, None)]
    with manager.handle("m", version=2) as entry:
        assert entry.version == 2
    with pytest.raises(NotFound, match=r"Servable not found for request: Specific\(m, 1\)"):
        manager.handle("m", version=1).__enter__()


def test_failed_version_is_end_with_its_error_and_not_retried(tmp_path: Path, fake_runtime) -> None:
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "broken").touch()
    manager = ServableManager(ManagerOptions(), Metrics())
    manager.set_config(config_for(tmp_path))
    [(version, state, error)] = manager.status("m")
    assert (version, state) == (3, END)
    assert error is not None and error.grpc_code.name == "NOT_FOUND"
    manager.reconcile()
    assert manager.status("m")[0][2] is error
    with pytest.raises(NotFound, match=r"Latest\(m\)"):
        manager.handle("m").__enter__()


def test_unload_waits_for_in_flight_requests(tmp_path: Path, fake_runtime) -> None:
    (tmp_path / "1").mkdir()
    manager = ServableManager(ManagerOptions(), Metrics())
    manager.set_config(config_for(tmp_path))
    holder = manager.handle("m")
    old = holder.__enter__()
    (tmp_path / "2").mkdir()
    reconciling = threading.Thread(target=manager.reconcile)
    reconciling.start()
    time.sleep(0.3)
    assert old.state == UNLOADING and not old.runtime.closed
    model = old.model
    holder.__exit__(None, None, None)
    reconciling.join(5)
    assert old.state == END and model.closed


def test_loading_model_answers_not_found_and_labels_resolve(tmp_path: Path, fake_runtime) -> None:
    """TF Serving answers NOT_FOUND while a version loads: core/basic_manager.cc
    ServingMap::GetUntypedServableHandle finds only servables that are ready, and returns
    errors::NotFound("Servable not found for request: ", request.DebugString())."""
    (tmp_path / "1").mkdir()
    fake_runtime["1"] = threading.Event()
    manager = ServableManager(ManagerOptions(), Metrics())
    loading = threading.Thread(target=manager.set_config, args=(config_for(tmp_path, stable=1),))
    loading.start()
    time.sleep(0.2)
    assert manager.status("m") == [(1, LOADING, None)]
    with pytest.raises(NotFound) as caught:
        manager.handle("m").__enter__()
    assert caught.value.message == "Servable not found for request: Latest(m)"
    assert caught.value.http_status == 404
    fake_runtime["1"].set()
    loading.join(5)
    with manager.handle("m", label="stable") as entry:
        assert entry.version == 1
    with pytest.raises(InvalidInput, match="Unrecognized servable version label: canary"):
        manager.handle("m", label="canary").__enter__()


def test_status_of_unknown_model_and_version(tmp_path: Path, fake_runtime) -> None:
    manager = ServableManager(ManagerOptions(), Metrics())
    with pytest.raises(NotFound, match="Could not find any versions of model nope"):
        manager.status("nope")
    (tmp_path / "1").mkdir()
    manager.set_config(config_for(tmp_path))
    with pytest.raises(NotFound, match="Could not find version 9 of model m"):
        manager.status("m", 9)


def test_config_file_poll_applies_changes(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/a" model_platform: "tensorflow" } }')
    applied = []

    class Recorder:
        def set_config(self, config) -> None:
            applied.append([m.name for m in config.model_config_list.config])

    stop = threading.Event()
    _poll_config_file(Recorder(), path, 1, stop)  # type: ignore[arg-type]
    path.write_text('model_config_list { config { name: "b" base_path: "/b" model_platform: "tensorflow" } }')
    deadline = time.monotonic() + 5
    while not applied and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    assert applied == [["b"]]


def test_versions_waiting_to_load_are_start(tmp_path: Path, fake_runtime) -> None:
    for version in ("1", "2"):
        (tmp_path / version).mkdir()
    fake_runtime["2"] = threading.Event()
    config = config_for(tmp_path)
    config.model_config_list.config[0].model_version_policy.all.SetInParent()
    manager = ServableManager(ManagerOptions(), Metrics())
    loading = threading.Thread(target=manager.set_config, args=(config,))
    loading.start()
    time.sleep(0.2)
    assert manager.status("m") == [(2, LOADING, None), (1, manager_module.START, None)]
    fake_runtime["2"].set()
    loading.join(5)
    assert manager.status("m") == [(2, AVAILABLE, None), (1, AVAILABLE, None)]
