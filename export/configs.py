"""TF Serving deployment files, written with TF Serving's own protos and text format.

- ``models.config``: the SavedModels (``model_platform: "tensorflow"``), for tensorflow_model_server;
- ``modelserver.config``: every servable our model server can load, variants included (tflite, onnx,
  tensorrt), less the flagged ones; same text format;
- ``batching_parameters.txt`` and ``monitoring.config``: BatchingParameters / MonitoringConfig in text
  format (their protos are not in tensorflow-serving-api's wheel; serving.modelserver.config parses them
  with descriptors that carry TF Serving's field names and numbers).

Files are replaced atomically and only when their content changes, so a re-run leaves them untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

MODELS_CONFIG = "models.config"
MODELSERVER_CONFIG = "modelserver.config"
BATCHING_FILE = "batching_parameters.txt"
MONITORING_FILE = "monitoring.config"
METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class Servable:
    name: str
    platform: str
    versions: tuple[int, ...]


def write_atomic(path: Path, content: str) -> bool:
    """Replace ``path`` with ``content`` (rename over it); False when it already holds exactly that."""
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    staging.write_text(content, encoding="utf-8")
    os.replace(staging, path)
    return True


def model_server_config(servables: list[Servable], base_path: str) -> str:
    """A ``model_config_list``; with two or more versions, the newest is ``canary`` and the one before
    ``stable``, and both stay loaded (a specific version policy) so the labels always resolve."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for servable in servables:
        entry = config.model_config_list.config.add()
        entry.name = servable.name
        entry.base_path = f"{base_path.rstrip('/')}/{servable.name}"
        entry.model_platform = servable.platform
        if len(servable.versions) >= 2:
            stable, canary = servable.versions[-2:]
            entry.model_version_policy.specific.versions.extend([stable, canary])
            entry.version_labels["stable"] = stable
            entry.version_labels["canary"] = canary
        else:
            entry.model_version_policy.latest.num_versions = 1
    return text_format.MessageToString(config)


def batching_parameters(cpus: int) -> str:
    threads = max(1, cpus)
    return f"""# TF Serving --enable_batching --batching_parameters_file (BatchingParameters, text format).
# Written by python -m export for a CPU host with {cpus} cores (the machine that ran it).
# - max_batch_size 64: the batch the export report measures throughput at; beyond it, latency grows
#   linearly on CPU while images/s barely improve for these small models.
# - batch_timeout_micros 2000: a lone request waits at most 2 ms for company, small against the
#   batch-1 latencies in export_report.md, enough for concurrent clients to merge.
# - num_batch_threads = cores ({threads}): one batch per core at a time; more only queue for the CPU.
# - max_enqueued_batches 16: bounds the queue (about 16 x 64 images) so overload fails fast (UNAVAILABLE)
#   instead of growing latency without limit.
# - allowed_batch_sizes: batches are padded up to the next size, so the runtime sees few distinct shapes
#   (TFLite reallocates, TensorRT picks a profile per shape); the list ends with max_batch_size.
# On a GPU (TF Serving GPU image) raise max_batch_size to 256, allowed sizes to ..., 128, 256, and
# num_batch_threads to 4: the GPU wants larger batches and the CPU only feeds it.
max_batch_size {{ value: 64 }}
batch_timeout_micros {{ value: 2000 }}
max_enqueued_batches {{ value: 16 }}
num_batch_threads {{ value: {threads} }}
allowed_batch_sizes: 8
allowed_batch_sizes: 16
allowed_batch_sizes: 32
allowed_batch_sizes: 64
"""


def monitoring_config() -> str:
    return f"""# TF Serving --monitoring_config_file (MonitoringConfig, text format): Prometheus on the REST port.
prometheus_config {{
  enable: true
  path: "{METRICS_PATH}"
}}
"""


def write_all(repo: Path, savedmodels: list[Servable], servables: list[Servable], base_path: str) -> list[Path]:
    """Write the four files into ``repo``; returns the ones whose content changed."""
    files = {
        MODELS_CONFIG: model_server_config(savedmodels, base_path),
        MODELSERVER_CONFIG: model_server_config(servables, base_path),
        BATCHING_FILE: batching_parameters(os.cpu_count() or 1),
        MONITORING_FILE: monitoring_config(),
    }
    return [repo / name for name, content in files.items() if write_atomic(repo / name, content)]
