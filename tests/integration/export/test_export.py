"""python -m export on the quick models: variants, configs, warmup, report, idempotence, TRT skip."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from export.variants import FORMATS, MEASURE_OPTIONS
from serving.modelserver import runtimes
from serving.modelserver.config import read_batching_parameters, read_monitoring_config
from serving.tensors import DT
from tests.integration.export.conftest import MEASURE_ARGS, TEST_IMAGES, Exported, run_export, snapshot

MODELS = ("cnn", "lstm", "transformer", "ensemble")
CONVERTED = ("dynamic", "fp16", "int8", "onnx")
# Top-1 agreement with the SavedModel that each format must reach on the quick models (300 images).
# ONNX computes in float32 like TF (differences ~1e-7); fp16 weights move probabilities ~1e-3;
# dynamic-range and int8 quantise activations/weights and may flip a few close calls of these
# barely-trained models. The export's own flag (< 99% on the full test set) is stricter for serving.
MIN_AGREEMENT = {"onnx": 0.999, "fp16": 0.99, "dynamic": 0.97, "int8": 0.95}


def test_export_exits_zero_and_says_why_trt_is_skipped(exported: Exported) -> None:
    assert exported.run.returncode == 0, exported.run.stdout + exported.run.stderr
    skip_lines = [line for line in exported.run.stdout.splitlines() if "trt skipped" in line]
    assert len(skip_lines) == 1, exported.run.stdout
    assert "no NVIDIA GPU is visible" in skip_lines[0]
    assert not list(exported.repo.glob("*_trt"))


@cache
def _images() -> tuple[np.ndarray, np.ndarray]:
    from export.source import load_images

    images = load_images(TEST_IMAGES, 10)
    return images.test, images.test_labels


@cache
def _classes(version_dir: Path, platform: str) -> np.ndarray:
    model = runtimes.load(platform, version_dir, MEASURE_OPTIONS)
    try:
        signature = model.signatures["serving_default"]
        return model.predict(signature, {"image": _images()[0]}, ["class_id"])["class_id"]
    finally:
        model.close()


@cache
def _source_outputs(version_dir: Path) -> dict[str, tuple[int, tuple[int, ...] | None]]:
    model = runtimes.load("tensorflow", version_dir, MEASURE_OPTIONS)
    try:
        return {alias: (s.dtype, s.shape) for alias, s in model.signatures["serving_default"].outputs.items()}
    finally:
        model.close()


@pytest.mark.parametrize("format_name", CONVERTED)
@pytest.mark.parametrize("model", MODELS)
def test_variant_keeps_contract_and_classes(exported: Exported, model: str, format_name: str) -> None:
    version_dir = exported.repo / f"{model}_{format_name}" / "1"
    files = sorted(path.name for path in version_dir.iterdir() if path.is_file())
    assert files == [FORMATS[format_name].filename]
    platform = FORMATS[format_name].platform
    loaded = runtimes.load(platform, version_dir, MEASURE_OPTIONS)
    try:
        mine = loaded.signatures["serving_default"]
        assert set(mine.inputs) == {"image"}
        assert {alias: (s.dtype, s.shape) for alias, s in mine.outputs.items()} == _source_outputs(
            exported.repo / model / "1"
        )
        assert mine.outputs["class_id"].dtype == DT["DT_INT64"].number
        assert mine.inputs["image"].shape == (-1, 28, 28, 1)
        assert mine.inputs["image"].dtype == DT["DT_FLOAT"].number
    finally:
        loaded.close()
    agreement = float((_classes(version_dir, platform) == _classes(exported.repo / model / "1", "tensorflow")).mean())
    assert agreement >= MIN_AGREEMENT[format_name], f"{model}_{format_name}: {agreement:.2%}"
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["export"] == {"format": format_name, "from": f"{model}/1"}
    assert (version_dir / "assets" / "labels.txt").read_text().count("\n") == 10


def test_configs_parse_back_and_point_at_existing_directories(exported: Exported) -> None:
    from tensorflow_serving.config import model_server_config_pb2

    repo = exported.repo
    report = json.loads((repo / "export_report.json").read_text())
    flagged = {row["servable"] for row in report["servables"] if row["flagged"]}
    models_config = text_format.Parse((repo / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert [(m.name, m.model_platform) for m in models_config.model_config_list.config] == [
        (name, "tensorflow") for name in MODELS
    ]
    served = text_format.Parse((repo / "modelserver.config").read_text(), model_server_config_pb2.ModelServerConfig())
    names = {m.name: m.model_platform for m in served.model_config_list.config}
    expected = {f"{m}_{f}": FORMATS[f].platform for m in MODELS for f in CONVERTED} | dict.fromkeys(
        MODELS, "tensorflow"
    )
    assert names == {name: platform for name, platform in expected.items() if name not in flagged}
    for config in (*models_config.model_config_list.config, *served.model_config_list.config):
        assert Path(config.base_path).is_dir(), config.base_path
        assert config.model_version_policy.latest.num_versions == 1
    batching = read_batching_parameters(repo / "batching_parameters.txt")
    assert batching.allowed_batch_sizes[-1] == batching.max_batch_size
    assert read_monitoring_config(repo / "monitoring.config").prometheus_enabled


def test_warmup_records_are_requests_the_savedmodel_accepts(exported: Exported) -> None:
    import tensorflow as tf

    from export.warmup import BATCH_SIZES, WARMUP_FILE, read

    for model in MODELS:
        version_dir = exported.repo / model / "1"
        logs = read(version_dir / WARMUP_FILE)
        assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * len(BATCH_SIZES)
        function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        for log, size in zip(logs, BATCH_SIZES, strict=True):
            request = log.predict_log.request
            assert (request.model_spec.name, request.model_spec.signature_name) == (model, "serving_default")
            image = tf.make_ndarray(request.inputs["image"])
            assert image.shape == (size, 28, 28, 1) and image.dtype == np.float32 and image.max() > 1
            outputs = function(image=tf.constant(image))
            assert outputs["class_id"].shape == (size,)


def test_report_has_every_variant_measured(exported: Exported) -> None:
    report = json.loads((exported.repo / "export_report.json").read_text())
    rows = {row["servable"]: row for row in report["servables"]}
    for model in MODELS:
        assert rows[model]["status"] == "source"
        assert rows[f"{model}_trt"]["status"] == "skipped"
        for format_name in CONVERTED:
            row = rows[f"{model}_{format_name}"]
            assert row["status"] in ("converted", "verified")
            assert row["size_bytes"] > 0 and 0 < row["speed"]["p50_ms"] <= row["speed"]["p99_ms"]
            assert row["speed"]["throughput_per_s"] > 0
            assert bool(row["flagged"]) == (row["agreement"] < 0.99)
    assert report["meta"]["test_images"] == TEST_IMAGES
    markdown = (exported.repo / "export_report.md").read_text()
    assert "| cnn_int8 |" in markdown
    for plot in ("export_accuracy_latency.png", "export_sizes.png"):
        assert (exported.repo / plot).read_bytes()[:4] == b"\x89PNG"


def test_rerun_verifies_and_changes_nothing(exported: Exported) -> None:
    before = snapshot(exported.repo)
    again = run_export(exported.repo, *MEASURE_ARGS)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(exported.repo) == before
    assert "converted" not in again.stdout
    assert again.stdout.count(": verified in") == len(MODELS) * len(CONVERTED)
    assert not [path for path in exported.repo.rglob(".*") if path.name.startswith((".staging", "."))]
