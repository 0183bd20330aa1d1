"""TF-free protos and the TensorProto codec, checked against TensorFlow's own implementation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from serving import protos, tensors
from serving.errors import InvalidInput
from serving.protos.build import build_descriptor_set


def test_committed_descriptor_set_matches_the_installed_wheels():
    built = build_descriptor_set().SerializeToString(deterministic=True)
    assert protos.DESCRIPTOR_SET_PATH.read_bytes() == built, (
        "serving/protos/tfserving.binpb is stale: run `make protos` after upgrading tensorflow-serving-api"
    )


def test_protos_import_without_tensorflow():
    code = "import sys; import serving.protos, serving.tensors; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_messages_are_wire_compatible_with_tf_serving():
    from tensorflow_serving.apis import predict_pb2

    request = protos.PredictRequest()
    request.model_spec.name = "cnn"
    request.model_spec.version.value = 3
    tensors.from_numpy(np.ones((1, 28, 28, 1), np.float32), request.inputs["image"])
    official = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert official.model_spec.name == "cnn" and official.model_spec.version.value == 3
    assert list(official.inputs["image"].tensor_shape.dim[i].size for i in range(4)) == [1, 28, 28, 1]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1, -2], dtype=np.int64),
        np.array([1, 2, 3], dtype=np.uint8),
        np.array([True, False]),
        np.array([1.5, -2.25], dtype=np.float16),
        np.array([1 + 2j], dtype=np.complex64),
        np.array([b"ab", b""], dtype=object),
    ],
)
def test_round_trip_against_tensorflow(array):
    import tensorflow as tf

    ours = tensors.from_numpy(array)
    theirs = tf.make_tensor_proto(array)
    from_ours = tf.make_ndarray(type(theirs).FromString(ours.SerializeToString()))
    from_theirs = tensors.to_numpy(type(ours).FromString(theirs.SerializeToString()))
    np.testing.assert_array_equal(from_ours, array)
    np.testing.assert_array_equal(from_theirs, array)
    assert from_theirs.dtype == from_ours.dtype


def test_typed_values_broadcast_like_tensorflow():
    import tensorflow as tf

    proto = tf.make_tensor_proto(3.0, shape=[2, 2])
    decoded = tensors.to_numpy(protos.TensorProto.FromString(proto.SerializeToString()))
    np.testing.assert_array_equal(decoded, np.full((2, 2), 3.0, np.float32))


def test_bad_tensors_raise_input_errors():
    tensor = protos.TensorProto(dtype=1, tensor_content=b"\x00" * 7)
    tensor.tensor_shape.dim.add().size = 2
    with pytest.raises(InvalidInput, match="tensor_content holds 7 bytes, but shape \\[2\\] of DT_FLOAT needs 8"):
        tensors.to_numpy(tensor)
    too_many = protos.TensorProto(dtype=1)
    too_many.tensor_shape.dim.add().size = 1
    too_many.float_val.extend([1.0, 2.0])
    with pytest.raises(InvalidInput, match="holds 2 values but its shape \\[1\\] has 1"):
        tensors.to_numpy(too_many)
    with pytest.raises(InvalidInput, match="Unsupported tensor dtype: DT_RESOURCE"):
        tensors.to_numpy(protos.TensorProto(dtype=20))
