"""The SavedModel contract on quick-trained models (the shared `quick_repo` fixture)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training.calibration import Combination
from training.data import CLASS_NAMES, load_dataset, subset

MEMBERS = ("cnn", "lstm", "transformer")


@pytest.fixture(scope="module")
def test_images() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset()
    return subset(data.x_test, data.y_test, 1000, seed=7)


@pytest.fixture(scope="module")
def loaded(quick_repo_cached: Path) -> dict[str, object]:
    return {name: tf.saved_model.load(str(quick_repo_cached / name / "1")) for name in (*MEMBERS, "ensemble")}


@pytest.mark.parametrize("name", MEMBERS)
def test_quick_member_beats_chance_by_a_wide_margin(loaded, test_images, name):
    images, labels = test_images
    outputs = loaded[name].signatures["serving_default"](image=tf.constant(images[..., None], tf.float32))
    accuracy = float((outputs["class_id"].numpy() == labels).mean())
    assert accuracy > 0.45, f"{name}: {accuracy:.3f} on 1,000 held-out test images (chance is 0.10)"


@pytest.mark.parametrize("name", (*MEMBERS, "ensemble"))
def test_signatures_follow_the_contract(loaded, name):
    signatures = loaded[name].signatures
    assert set(signatures) == {"serving_default", "serving_bytes"}
    default = signatures["serving_default"]
    (spec,) = default.structured_input_signature[1].values()
    assert list(default.structured_input_signature[1]) == ["image"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 28, 28, 1]
    outputs = default.structured_outputs
    assert outputs["probabilities"].dtype == tf.float32 and outputs["probabilities"].shape.as_list() == [
        None,
        10,
    ]
    assert outputs["class_id"].dtype == tf.int64 and outputs["class_id"].shape.as_list() == [None]
    expected = {"probabilities", "class_id"}
    if name == "ensemble":
        expected |= {"hard_vote_class_id", "member_probabilities"}
        assert outputs["member_probabilities"].shape.as_list() == [None, 3, 10]
        assert outputs["hard_vote_class_id"].dtype == tf.int64
    assert set(outputs) == expected
    encoded = signatures["serving_bytes"]
    assert list(encoded.structured_input_signature[1]) == ["image_bytes"]
    (bytes_spec,) = encoded.structured_input_signature[1].values()
    assert bytes_spec.dtype == tf.string and bytes_spec.shape.as_list() == [None]
    assert set(encoded.structured_outputs) == expected


def test_probabilities_are_distributions(loaded, test_images):
    images, _ = test_images
    for name, module in loaded.items():
        probabilities = module.signatures["serving_default"](image=tf.constant(images[:64, ..., None], tf.float32))[
            "probabilities"
        ].numpy()
        assert probabilities.shape == (64, 10)
        assert np.isfinite(probabilities).all(), name
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4, err_msg=name)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bytes_signature_matches_pixels_and_converts_odd_images(loaded, test_images):
    images, _ = test_images
    cnn = loaded["cnn"].signatures
    pixels = cnn["serving_default"](image=tf.constant(images[:8, ..., None], tf.float32))
    encoded = cnn["serving_bytes"](image_bytes=tf.constant([_png(image) for image in images[:8]]))
    np.testing.assert_allclose(encoded["probabilities"].numpy(), pixels["probabilities"].numpy(), atol=1e-5)
    # colour and another size: converted to grayscale 28x28 in the graph
    colour = np.stack([np.kron(images[0], np.ones((2, 2), np.uint8))] * 3, axis=-1)
    answer = cnn["serving_bytes"](image_bytes=tf.constant([_png(colour)]))
    assert answer["probabilities"].shape == (1, 10)


def test_ensemble_combines_members_as_its_model_card_says(loaded, test_images, quick_repo_cached: Path):
    images, _ = test_images
    out = loaded["ensemble"].signatures["serving_default"](image=tf.constant(images[:200, ..., None], tf.float32))
    members = np.stack(
        [
            loaded[name]
            .signatures["serving_default"](image=tf.constant(images[:200, ..., None], tf.float32))["probabilities"]
            .numpy()
            for name in MEMBERS
        ],
        axis=1,
    )
    np.testing.assert_allclose(out["member_probabilities"].numpy(), members, atol=1e-5)
    card = json.loads((quick_repo_cached / "ensemble" / "1" / "assets.extra" / "model_card.json").read_text())
    combination = card["combination"]
    assert combination["members"] == list(MEMBERS) and combination["mode"] in ("logit", "mean")
    assert [m["temperature"] for m in card["members"]] == combination["temperatures"]
    assert combination["fitted_on"].startswith("validation split")
    expected = Combination.from_dict(combination).apply(members)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out["class_id"].numpy(), expected.argmax(axis=1))
    member_classes = members.argmax(axis=2)
    for row, hard in enumerate(out["hard_vote_class_id"].numpy()):
        counts = np.bincount(member_classes[row], minlength=10)
        tied = np.flatnonzero(counts == counts.max())
        assert hard == tied[np.argmax(expected[row, tied])], (row, member_classes[row], expected[row])
    # fitted on validation data, the combination is at least as good there as the plain mean
    fit = combination["validation"]
    assert fit[combination["mode"]]["log_loss"] <= fit["equal"]["log_loss"] + 1e-9


def test_model_card_and_labels_asset(quick_repo_cached: Path):
    for name in (*MEMBERS, "ensemble"):
        version_dir = quick_repo_cached / name / "1"
        card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
        assert card["labels"] == list(CLASS_NAMES["fashion_mnist"])
        assert card["dataset"]["name"] == "fashion_mnist"
        assert 0.0 <= card["metrics"]["test_accuracy"] <= 1.0
        for key in ("versions", "git_commit", "created", "input_contract", "training"):
            assert key in card, (name, key)
        labels = (version_dir / "assets" / "labels.txt").read_text().splitlines()
        assert labels == list(CLASS_NAMES["fashion_mnist"])
        if name in MEMBERS:  # each member serves probabilities calibrated on the validation split
            calibration = card["calibration"]
            assert 0.05 < calibration["temperature"] < 20.0 and "validation split" in calibration["fitted_on"]
            assert calibration["validation"]["log_loss_after"] <= calibration["validation"]["log_loss_before"] + 1e-9


TF1_SESSION_CHECK = """
import sys, numpy as np, tensorflow as tf
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.load(session, ["serve"], sys.argv[1])
    signature = meta.signature_def["serving_default"]
    feed = {signature.inputs["image"].name: np.zeros((2, 28, 28, 1), np.float32)}
    outputs = session.run({key: value.name for key, value in signature.outputs.items()}, feed)
    print(sorted((key, value.shape) for key, value in outputs.items()))
"""


@pytest.mark.parametrize("name", (*MEMBERS, "ensemble"))
def test_savedmodel_runs_in_a_tf1_session_like_tensorflow_model_server(quick_repo_cached: Path, name):
    """tensorflow_model_server loads SavedModels into a session (C++ LoadSavedModel), not through
    tf.saved_model.load; a Keras 3 model whose variables are not tracked fails there only."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", TF1_SESSION_CHECK, str(quick_repo_cached / name / "1")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "('class_id', (2,))" in result.stdout and "('probabilities', (2, 10))" in result.stdout
