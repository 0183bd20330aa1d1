"""``inference.conform_inputs``: what may reach a runtime (any runtime: the model server calls it before
every one). Runtimes broke on these: oneDNN aborted the process on a wrong rank, XNNPACK's interpreter
on an empty batch. The same cases against real servers and runtimes: tests/integration/modelserver."""

from __future__ import annotations

import numpy as np
import pytest

from serving.errors import Internal, InvalidInput
from serving.modelserver.inference import conform_inputs, predict_in_slices
from serving.modelserver.runtimes.base import PREDICT_METHOD, Signature, TensorSpec
from serving.tensors import DT, DT_STRING

FLOAT = DT["DT_FLOAT"].number


def signature(shape: tuple[int, ...] | None, dtype: int = FLOAT, alias: str = "image") -> Signature:
    spec = TensorSpec(alias, dtype, shape, f"{alias}:0")
    output = TensorSpec("y", FLOAT, (-1, 10), "y:0")
    return Signature("serving_default", PREDICT_METHOD, {alias: spec}, {"y": output})


IMAGE = signature((-1, 28, 28, 1))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 2), "Input image has shape [1,2] but the signature expects [-1,28,28,1]"),
        ((1, 28, 28), "Input image has shape [1,28,28] but the signature expects [-1,28,28,1]"),
        ((28, 28, 1), "Input image has shape [28,28,1] but the signature expects [-1,28,28,1]"),
        ((1, 1, 28, 28, 1), "Input image has shape [1,1,28,28,1] but the signature expects [-1,28,28,1]"),
        ((1, 27, 28, 1), "Input image has shape [1,27,28,1] but the signature expects [-1,28,28,1]"),
        ((1, 28, 28, 3), "Input image has shape [1,28,28,3] but the signature expects [-1,28,28,1]"),
        ((784,), "Input image has shape [784] but the signature expects [-1,28,28,1]"),
        ((), "Input image has shape [] but the signature expects [-1,28,28,1]"),
    ],
)
def test_wrong_rank_or_dimension_is_refused(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        conform_inputs(IMAGE, {"image": np.zeros(shape, np.float32)})
    assert caught.value.message == message


@pytest.mark.parametrize("shape", [(0, 28, 28, 1), (0,)])
def test_empty_batch_is_refused(shape: tuple[int, ...]) -> None:
    spec = IMAGE if len(shape) == 4 else signature((-1,))
    with pytest.raises(InvalidInput) as caught:
        conform_inputs(spec, {"image": np.zeros(shape, np.float32)})
    assert caught.value.message.startswith(f"Input image has shape [{','.join(map(str, shape))}]: an empty batch")


def test_zero_size_inner_dimension_is_refused_where_the_signature_leaves_it_open() -> None:
    open_width = signature((-1, -1))
    with pytest.raises(InvalidInput, match=r"shape \[2,0\]: an empty batch or a zero-size dimension"):
        conform_inputs(open_width, {"image": np.zeros((2, 0), np.float32)})


@pytest.mark.parametrize(
    ("array", "got"),
    [
        (np.array([[[["x"]] * 28] * 28], dtype=object), "string"),
        (np.zeros((1, 28, 28, 1), np.float64), "double"),
        (np.zeros((1, 28, 28, 1), np.int32), "int32"),
        (np.zeros((1, 28, 28, 1), np.bool_), "bool"),
    ],
)
def test_wrong_dtype_gets_tensorflows_words_before_any_shape_check(array: np.ndarray, got: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        conform_inputs(IMAGE, {"image": array})
    assert caught.value.message == f"Expects arg[0] to be float but {got} is provided"


def test_a_string_signature_takes_strings_of_any_rank_when_its_rank_is_unknown() -> None:
    examples = signature(None, DT_STRING, "inputs")
    array = np.array([b"a", b"b"], dtype=object)
    assert conform_inputs(examples, {"inputs": array}).inputs["inputs"] is array
    with pytest.raises(InvalidInput, match="Expects arg\\[0\\] to be string but float is provided"):
        conform_inputs(examples, {"inputs": np.zeros(2, np.float32)})


def test_nan_and_inf_pass_as_in_tf_serving() -> None:
    array = np.full((1, 28, 28, 1), np.nan, np.float32)
    array[0, 0, 0, 0] = np.inf
    assert conform_inputs(IMAGE, {"image": array}).inputs["image"] is array


def test_flat_list_for_a_column_input_is_fed_as_a_column_and_answered_flat() -> None:
    column = signature((-1, 1), alias="x")
    conformed = conform_inputs(column, {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    assert conformed.inputs["x"].shape == (3, 1)
    restored = conformed.restore({"y": np.array([[2.5], [3.0], [4.5]], np.float32), "z": np.zeros((3, 2))})
    assert restored["y"].tolist() == [2.5, 3.0, 4.5]
    assert restored["z"].shape == (3, 2)


def test_a_fixed_batch_size_in_the_signature_takes_any_batch_but_nothing_else_differs() -> None:
    static = signature((1, 1), alias="x")
    assert conform_inputs(static, {"x": np.ones((5, 1), np.float32)}).inputs["x"].shape == (5, 1)
    with pytest.raises(InvalidInput, match=r"shape \[5,2\] but the signature expects \[1,1\]"):
        conform_inputs(static, {"x": np.ones((5, 2), np.float32)})
    flat = conform_inputs(static, {"x": np.ones(5, np.float32)})
    assert (flat.inputs["x"].shape, flat.flat_rows) == ((5, 1), 5)


def test_missing_input_with_a_default_is_left_to_the_signature() -> None:
    assert conform_inputs(IMAGE, {}).inputs == {}


def test_a_large_request_runs_in_slices_and_answers_as_one() -> None:
    seen: list[int] = []

    def predict(sig: Signature, inputs: dict[str, np.ndarray], aliases: list[str]) -> dict[str, np.ndarray]:
        seen.append(len(inputs["image"]))
        return {"y": inputs["image"].reshape(len(inputs["image"]), -1)[:, :10] + 1}

    images = np.arange(25 * 784, dtype=np.float32).reshape(25, 28, 28, 1)
    outputs = predict_in_slices(predict, IMAGE, {"image": images}, ["y"], limit=10)
    assert seen == [10, 10, 5]
    np.testing.assert_array_equal(outputs["y"], images.reshape(25, -1)[:, :10] + 1)
    seen.clear()
    predict_in_slices(predict, IMAGE, {"image": images[:10]}, ["y"], limit=10)
    assert seen == [10]


def test_slices_that_answer_the_wrong_rows_are_an_internal_error() -> None:
    def predict(sig: Signature, inputs: dict[str, np.ndarray], aliases: list[str]) -> dict[str, np.ndarray]:
        return {"y": np.zeros((1, 10), np.float32)}

    with pytest.raises(Internal):
        predict_in_slices(predict, IMAGE, {"image": np.zeros((4, 28, 28, 1), np.float32)}, ["y"], limit=2)
