from __future__ import annotations

import base64
import io

import numpy as np
import orjson
import pytest
from PIL import Image

from loadtest import payloads
from loadtest.answers import Answers
from serving import protos
from serving.tensors import from_numpy, to_numpy


def test_instances_payload_is_tf_serving_rows_of_the_test_images() -> None:
    images, labels = payloads.test_images()
    built = payloads.build("instances", "cnn", batch=2, count=3)
    assert len(built) == 3
    document = orjson.loads(built[1].body)
    rows = np.asarray(document["instances"], np.float32)
    assert rows.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(rows[:, :, :, 0], images[2:4])
    assert built[1].labels == (int(labels[2]), int(labels[3]))
    assert built[1].content_type == "application/json"


def test_b64_and_multipart_payloads_carry_lossless_pngs() -> None:
    images, _ = payloads.test_images()
    b64 = payloads.build("b64", "cnn", batch=1, count=1)[0]
    png = base64.b64decode(orjson.loads(b64.body)["images"][0])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), images[0])
    multipart = payloads.build("multipart", "cnn", batch=2, count=1)[0]
    assert multipart.content_type == f"multipart/form-data; boundary={payloads.BOUNDARY}"
    assert multipart.body.count(b'name="file"') == 2
    assert multipart.body.endswith(f"--{payloads.BOUNDARY}--\r\n".encode())


def test_grpc_payload_is_a_predict_request() -> None:
    images, _ = payloads.test_images()
    request = protos.PredictRequest.FromString(payloads.build("grpc", "vote", batch=3, count=1)[0].body)
    assert request.model_spec.name == "vote"
    tensor = to_numpy(request.inputs["image"])
    assert tensor.shape == (3, 28, 28, 1) and tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor[:, :, :, 0], images[:3])


def test_paths_and_unknown_kinds() -> None:
    assert payloads.path_for("instances", "cnn") == "/v1/models/cnn:predict"
    assert payloads.path_for("multipart", "vote") == "/v1/classify/vote"
    with pytest.raises(ValueError, match="unknown payload kind 'jpeg'"):
        payloads.build("jpeg", "cnn")
    with pytest.raises(ValueError, match="batch must be at least 1"):
        payloads.build("instances", "cnn", batch=0)


def _rest_answer(classes: list[int]) -> bytes:
    return orjson.dumps({"predictions": [{"class_id": k, "probabilities": [0.1] * 10} for k in classes]})


def test_rest_answers_are_checked_for_shape() -> None:
    assert payloads.rest_class_ids(_rest_answer([3, 4]), 2) == [3, 4]
    classify = {"predictions": [{"label": "Bag", "class_id": 8, "probabilities": {str(i): 0.1 for i in range(10)}}]}
    assert payloads.rest_class_ids(orjson.dumps(classify), 1) == [8]
    with pytest.raises(payloads.AnswerError, match="1 predictions for 2 images"):
        payloads.rest_class_ids(_rest_answer([3]), 2)
    with pytest.raises(payloads.AnswerError, match="not a prediction"):
        payloads.rest_class_ids(b'{"error": "Servable not found"}', 1)
    with pytest.raises(payloads.AnswerError, match="out of range"):
        payloads.rest_class_ids(_rest_answer([12]), 1)
    bad_probabilities = orjson.dumps({"predictions": [{"class_id": 1, "probabilities": [0.5, 0.5]}]})
    with pytest.raises(payloads.AnswerError, match="10 values"):
        payloads.rest_class_ids(bad_probabilities, 1)


def test_grpc_answers_are_checked_for_shape() -> None:
    response = protos.PredictResponse()
    from_numpy(np.array([7, 1], np.int64), response.outputs["class_id"])
    from_numpy(np.full((2, 10), 0.1, np.float32), response.outputs["probabilities"])
    assert payloads.grpc_class_ids(response, 2) == [7, 1]
    with pytest.raises(payloads.AnswerError, match=r"shape \[2, 10\], expected \[3, 10\]"):
        payloads.grpc_class_ids(response, 3)


def test_a_deliberately_wrong_label_is_counted_as_a_wrong_answer() -> None:
    honest = payloads.build("instances", "cnn", batch=4, count=1)[0]
    shifted = payloads.build("instances", "cnn", batch=4, count=1, label_shift=1)[0]
    perfect_answer = payloads.rest_class_ids(_rest_answer(list(honest.labels)), 4)
    assert payloads.wrong_count(perfect_answer, honest.labels) == 0
    assert payloads.wrong_count(perfect_answer, shifted.labels) == 4
    answers = Answers()
    answers.record("instances cnn x4", 4, payloads.wrong_count(perfect_answer, shifted.labels))
    answers.record("instances cnn x4", 4, payloads.wrong_count(perfect_answer, honest.labels))
    assert answers.summary()["answers"]["instances cnn x4"] == {"images": 8, "wrong": 4, "wrong_pct": 50.0}


def test_answers_merge_worker_counts_and_keep_exact_latencies() -> None:
    worker, master = Answers(), Answers()
    worker.record("grpc cnn x1", 10, 2)
    master.merge_counts(worker.take_counts())
    worker.record("grpc cnn x1", 5, 1)
    master.merge_counts(worker.take_counts())
    assert master.summary()["answers"]["grpc cnn x1"]["images"] == 15
    assert worker.take_counts() == {}
    for milliseconds in (1.0, 2.0, 3.0, 4.0):
        master.request("grpc cnn x1", milliseconds, failed=False)
    master.request("grpc cnn x1", 9.0, failed=True)
    requests = master.summary()["requests"]["grpc cnn x1"]
    assert requests["count"] == 4 and requests["failures"] == 1
    assert requests["p50"] == pytest.approx(2.5) and requests["max"] == 4.0


def test_distributed_workers_send_their_latencies_to_the_master() -> None:
    """Two workers' samples, failures, errors and windows merge into the master's exact statistics,
    equal to what one process that saw every request would report."""
    single, master = Answers(), Answers()
    workers = [Answers(), Answers()]
    for index, milliseconds in enumerate([1.0, 5.0, 2.0, 8.0, 3.0, 4.0]):
        for answers in (single, workers[index % 2]):
            answers.request("grpc cnn x1", milliseconds, failed=False)
    for answers in (single, workers[1]):
        answers.request("grpc cnn x1", 30.0, failed=True, error="UNAVAILABLE: gone")
    for worker in workers:
        master.merge_requests(worker.take_requests())
        assert worker.take_requests() == {"samples": {}, "failures": {}, "window": {}, "errors": {}}
    merged, alone = master.summary()["requests"]["grpc cnn x1"], single.summary()["requests"]["grpc cnn x1"]
    for key in ("count", "failures", "p50", "p95", "p99", "max", "mean"):
        assert merged[key] == pytest.approx(alone[key]), key
    assert merged["window_start"] <= alone["window_start"] + 0.01 and merged["window_s"] >= 0
    assert master.summary()["errors"] == {"grpc cnn x1": {"UNAVAILABLE: gone": 1}}


def test_v2_payloads_decode_with_the_protocols_codecs() -> None:
    from serving.v2 import grpc_codec, rest

    images, labels = payloads.test_images()
    for kind in ("v2-json", "v2-binary"):
        payload = payloads.build(kind, "cnn", batch=2, count=1)[0]
        length = dict(payload.headers).get("Inference-Header-Content-Length")
        request = rest.decode_request(payload.body, length, "cnn", "")
        np.testing.assert_array_equal(request.inputs["image"][:, :, :, 0], images[:2])
        assert request.inputs["image"].dtype == np.float32 and request.outputs is None
        assert request.binary_outputs is (kind == "v2-binary")
        assert payload.labels == (int(labels[0]), int(labels[1]))
        assert payloads.path_for(kind, "cnn") == "/v2/models/cnn/infer"
    message = protos.ModelInferRequest.FromString(payloads.build("v2-grpc", "vote", batch=3, count=1)[0].body)
    request = grpc_codec.decode_request(message)
    assert request.model == "vote"
    np.testing.assert_array_equal(request.inputs["image"][:, :, :, 0], images[:3])


def test_v2_answers_are_checked_for_shape() -> None:
    from serving.v2 import grpc_codec, rest

    outputs = [("class_id", "INT64", np.array([7, 1])), ("probabilities", "FP32", np.full((2, 10), 0.1, np.float32))]
    for binary in (False, True):
        body, length = rest.encode_response("cnn", "1", "", [(*o, binary) for o in outputs])
        assert payloads.v2_class_ids(body, None if length is None else str(length), 2) == [7, 1]
        with pytest.raises(payloads.AnswerError, match=r"shape \[2, 10\], expected \[3, 10\]"):
            payloads.v2_class_ids(body, None if length is None else str(length), 3)
    with pytest.raises(payloads.AnswerError, match="not a v2 prediction"):
        payloads.v2_class_ids(b'{"error": "unknown model"}', None, 1)
    response = grpc_codec.encode_response("cnn", "1", "", outputs)
    assert payloads.v2_grpc_class_ids(response, 2) == [7, 1]
    del response.outputs[0]
    with pytest.raises(payloads.AnswerError, match="not a v2 prediction"):
        payloads.v2_grpc_class_ids(response, 2)
