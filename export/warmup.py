"""TF Serving warmup records: ``assets.extra/tf_serving_warmup_requests`` in each SavedModel version,
a TFRecord of PredictionLogs holding real PredictRequests, replayed by the server at load.

Written once per version (temporary file, renamed into place); an existing file is read back and
checked, never rewritten, so a version's files stay what they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from export.variants import ExportError

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# Batch sizes a deployment sees: single requests, a small coalesced batch, the batcher's largest.
BATCH_SIZES = (1, 8, 64)


def requests(model: str, images: np.ndarray) -> list[Any]:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    logs = []
    for size in BATCH_SIZES:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = "serving_default"
        batch = np.resize(images, (size, *images.shape[1:])).astype(np.float32)
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(batch))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def read(path: Path) -> list[Any]:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    try:
        return [
            prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in tf.data.TFRecordDataset(str(path))
        ]
    except Exception as error:  # tf.errors.DataLossError, DecodeError
        raise ExportError(f"{path}: unreadable warmup file ({str(error).splitlines()[0]})") from None


def ensure(version_dir: Path, model: str, images: np.ndarray) -> bool:
    """Write the warmup file unless it exists (then check it reads back); True when written."""
    import tensorflow as tf

    path = version_dir / WARMUP_FILE
    if path.is_file():
        if not read(path):
            raise ExportError(f"{path}: warmup file holds no PredictionLog")
        return False
    path.parent.mkdir(exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tf.io.TFRecordWriter(str(staging)) as writer:
            for log in requests(model, images):
                writer.write(log.SerializeToString())
        os.rename(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return True
