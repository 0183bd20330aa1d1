"""Bad input: one clear line naming model, format and cause; the rest goes on; no partial files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export import cli, tflite
from export.variants import ExportError
from tests.integration.export.conftest import run_export

FAST = ["--test-size", "50", "--calibration-size", "20", "--latency-runs", "3", "--throughput-runs", "1"]


def test_repository_without_savedmodels(tmp_path: Path) -> None:
    (tmp_path / "cnn").mkdir()
    result = run_export(tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"export: {tmp_path}: no SavedModels (no <model>/<version>/ directories); "
        f"train first: python -m training --repo {tmp_path}"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cnn"]


def test_unknown_format(tmp_path: Path) -> None:
    result = run_export(tmp_path, "--formats", "onnx", "int4")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "export: unknown format 'int4'; choose from: dynamic, fp16, int8, onnx, trt"
    )


@pytest.fixture
def small_repo(quick_repo_cached: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "models"
    for name in ("cnn", "transformer"):
        shutil.copytree(quick_repo_cached / name, repo / name)
    return repo


def test_corrupt_savedmodel_fails_alone(small_repo: Path) -> None:
    (small_repo / "transformer" / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    result = run_export(small_repo, "--formats", "dynamic", *FAST)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("export: FAILED")]
    assert len(failed) == 1 and failed[0].startswith("export: FAILED transformer savedmodel: ")
    assert (small_repo / "cnn_dynamic" / "1" / "model.tflite").is_file()
    assert not (small_repo / "transformer_dynamic").exists()
    assert "transformer" not in (small_repo / "models.config").read_text()
    assert not (small_repo / "transformer" / "1" / "assets.extra" / "tf_serving_warmup_requests").exists()


def test_failed_conversion_leaves_nothing_and_others_go_on(
    small_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tflite.convert

    def convert(saved_model: Path, format_name: str, calibration: object) -> bytes:
        if format_name == "dynamic" and saved_model.parent.name == "cnn":
            raise ExportError("TFLite converter: op FOO is neither a custom op nor a flex op")
        return real(saved_model, format_name, calibration)  # type: ignore[arg-type]

    monkeypatch.setattr(tflite, "convert", convert)
    code = cli.main(["--repo", str(small_repo), "--models", "cnn", "--formats", "fp16", "dynamic", *FAST])
    out = capsys.readouterr()
    assert code == 1
    assert "export: FAILED cnn dynamic: TFLite converter: op FOO is neither a custom op nor a flex op" in out.err
    assert not (small_repo / "cnn_dynamic").exists()
    assert not list(small_repo.rglob(".staging-*"))
    assert (small_repo / "cnn_fp16" / "1" / "model.tflite").is_file()
    # The variant that goes on is float16: its answers match the SavedModel's on every one of the 50
    # images, so it passes the 99% agreement bar and is served. (Dynamic-range int8 of a quick model can
    # disagree on 1 image of 50, which flags it and leaves it out of the config, as it should.)
    served = (small_repo / "modelserver.config").read_text()
    assert '"cnn_fp16"' in served and "cnn_dynamic" not in served
