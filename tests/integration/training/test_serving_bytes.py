"""``serving_bytes`` in the exported SavedModels prepares pictures as the gateway does: the same
answers as the gateway's numpy preparation fed to ``serving_default``, in TF2 and in a TF1 session
(how tensorflow_model_server runs a SavedModel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from loadtest import photosets
from serving.pictures import decode, orientation, prepare, spec
from training.data import load_dataset, subset


@pytest.fixture(scope="module")
def pictures() -> list[bytes]:
    data = load_dataset()
    images, _ = subset(data.x_test, data.y_test, 20, seed=5)
    return [picture for name in ("dataset", "light-224", "everything") for picture in photosets.build(name, images)]


def _gateway_inputs(pictures: list[bytes]) -> np.ndarray:
    arrays = []
    for picture in pictures:
        planes = decode(picture, spec.MAX_PIXELS)
        arrays.append(prepare(planes.y, planes.alpha, orientation(picture))[0])
    return np.stack(arrays)


@pytest.mark.parametrize("name", ["cnn", "ensemble"])
def test_serving_bytes_answers_as_the_gateway_prepares(quick_repo_cached: Path, pictures: list[bytes], name: str):
    signatures = tf.saved_model.load(str(quick_repo_cached / name / "1")).signatures
    from_bytes = signatures["serving_bytes"](image_bytes=tf.constant(pictures))
    from_pixels = signatures["serving_default"](image=tf.constant(_gateway_inputs(pictures)))
    np.testing.assert_array_equal(from_bytes["class_id"].numpy(), from_pixels["class_id"].numpy())
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-6)


TF1_BYTES_CHECK = """
import sys, numpy as np, tensorflow as tf
pictures = [open(path, "rb").read() for path in sys.argv[2:]]
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.load(session, ["serve"], sys.argv[1])
    signature = meta.signature_def["serving_bytes"]
    feed = {signature.inputs["image_bytes"].name: np.array(pictures, dtype=object)}
    outputs = session.run({key: value.name for key, value in signature.outputs.items()}, feed)
    print(" ".join(str(value) for value in outputs["class_id"].tolist()))
"""


def test_serving_bytes_runs_in_a_tf1_session_like_tensorflow_model_server(
    quick_repo_cached: Path, pictures: list[bytes], tmp_path: Path
):
    paths = []
    for index, picture in enumerate(pictures[::6]):
        path = tmp_path / f"picture-{index}"
        path.write_bytes(picture)
        paths.append(str(path))
    version = quick_repo_cached / "cnn" / "1"
    result = subprocess.run(
        [sys.executable, "-c", TF1_BYTES_CHECK, str(version), *paths], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = tf.saved_model.load(str(version)).signatures["serving_default"]
    expected = model(image=tf.constant(_gateway_inputs(pictures[::6])))["class_id"].numpy().tolist()
    assert result.stdout.split() == [str(value) for value in expected]
