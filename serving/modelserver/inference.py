"""TF Serving's request semantics over one loaded model: signature lookup, input checks, and turning
classification / regression signatures' tensors into results. Synchronous and runtime-agnostic; the
messages are TF Serving's (predict_util.cc, classifier.cc, regressor.cc, multi_inference.cc)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import protos
from serving.errors import FailedPrecondition, Internal, InvalidInput
from serving.modelserver.runtimes.base import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    Model,
    Signature,
    TensorSpec,
)
from serving.tensors import DT_STRING, dtype_name, tf_dtype


def signature_for(model: Model, name: str) -> tuple[str, Signature]:
    """gRPC's lookup: FAILED_PRECONDITION when absent."""
    resolved = name or DEFAULT_SIGNATURE
    signature = model.signatures.get(resolved)
    if signature is None:
        raise FailedPrecondition(f'Serving signature key "{resolved}" not found.')
    return resolved, signature


def rest_signature_for(model: Model, name: str) -> tuple[str, Signature]:
    """REST's lookup (before the JSON is read): INVALID_ARGUMENT when absent."""
    resolved = name or DEFAULT_SIGNATURE
    signature = model.signatures.get(resolved)
    if signature is None:
        raise InvalidInput(f'Serving signature name: "{resolved}" not found in signature def')
    return resolved, signature


def check_predict_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """VerifyRequestInputsSize and GetInputValues."""
    sent, expected = set(inputs), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
        raise InvalidInput(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
        )
    for alias in sorted(sent):
        if alias not in expected:
            raise InvalidInput(
                f"input tensor alias not found in signature: {alias}. "
                f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
            )
    for alias in sorted(expected - sent):
        if alias not in signature.defaults:
            raise InvalidInput(f"Missing input with key {alias} and no default value in signature")


@dataclass(frozen=True)
class Conformed:
    """A request's inputs as the runtime will see them. ``flat_rows`` is set when a flat list of numbers
    was sent for ``[batch, 1]`` inputs (TF Serving's REST examples do this): the runtime gets
    ``[rows, 1]`` and outputs of shape ``[rows, 1]`` go back flat, as TF Serving would answer."""

    inputs: dict[str, np.ndarray]
    flat_rows: int | None = None

    def restore(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = self.flat_rows
        if rows is None:
            return outputs
        return {
            alias: value.reshape(rows) if value.ndim == 2 and value.shape == (rows, 1) else value
            for alias, value in outputs.items()
        }


def conform_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> Conformed:
    """Every input checked against the signature before any runtime sees it, whatever the runtime:
    dtype, rank, every known dimension but the batch, and no zero-size tensor. TF Serving leaves shapes
    to TensorFlow, but TensorFlow's oneDNN kernels (on by default on Intel CPUs) abort the whole process
    on a wrong rank, and TFLite's XNNPACK delegate breaks its interpreter on an empty batch: nothing that
    contradicts the signature may reach a runtime. The leading (batch) dimension may differ from a fixed
    size in the signature, as in TF Serving: exports often fix it (half_plus_two's TF2 export says [1],
    its TFLite one [1,1]) while the model runs any batch; TensorFlow and onnxruntime check it themselves
    and TF Serving's TFLite session resizes it."""
    conformed: dict[str, np.ndarray] = {}
    flat_rows: int | None = None
    for position, (alias, spec) in enumerate(signature.inputs.items()):
        array = inputs.get(alias)
        if array is None:
            continue  # a signature default, checked by check_predict_inputs
        _check_dtype(spec, array, position)
        expected = spec.shape
        if expected is not None:
            if expected:
                expected = (-1, *expected[1:])
            if array.ndim == 1 and len(expected) >= 2 and all(size == 1 for size in expected[1:]):
                array = array.reshape(array.shape[0], *expected[1:])
                flat_rows = array.shape[0]
            fits = array.ndim == len(expected) and all(e in (-1, a) for e, a in zip(expected, array.shape, strict=True))
            if not fits:
                raise InvalidInput(
                    f"Input {alias} has shape {_dims(inputs[alias].shape)} but the signature expects "
                    f"{_dims(spec.shape or ())}"
                )
        if array.ndim and 0 in array.shape:
            raise InvalidInput(
                f"Input {alias} has shape {_dims(array.shape)}: an empty batch or a zero-size dimension cannot be "
                "run by the model; send at least one row"
            )
        conformed[alias] = array
    return Conformed(conformed, flat_rows)


# Rows one runtime call takes at most when batching is off (TF Serving's default max_batch_size). A larger
# request to a batchable signature runs in slices of this many rows, so that its activations (about
# 100 KB a row for the cnn) cannot take the process's memory; batching bounds rows with max_batch_size.
MAX_ROWS_PER_CALL = 1000

Predict = Callable[[Signature, Mapping[str, np.ndarray], Sequence[str]], dict[str, np.ndarray]]


def predict_in_slices(
    predict: Predict,
    signature: Signature,
    inputs: Mapping[str, np.ndarray],
    aliases: Sequence[str],
    limit: int = MAX_ROWS_PER_CALL,
) -> dict[str, np.ndarray]:
    rows = {array.shape[0] for array in inputs.values() if array.ndim}
    if not signature.batchable or len(rows) != 1 or len(inputs) != len(signature.inputs) or max(rows) <= limit:
        return predict(signature, inputs, aliases)
    total = rows.pop()
    parts = []
    for start in range(0, total, limit):
        part = predict(signature, {alias: array[start : start + limit] for alias, array in inputs.items()}, aliases)
        expected = min(limit, total - start)
        if any(value.ndim == 0 or value.shape[0] != expected for value in part.values()):
            raise Internal("Output tensor's 0th dimension does not match the rows of the input slice")
        parts.append(part)
    return {alias: np.concatenate([part[alias] for part in parts]) for alias in aliases}


def _dims(shape: Sequence[int]) -> str:
    return f"[{','.join(map(str, shape))}]"


def _check_dtype(spec: TensorSpec, array: np.ndarray, position: int) -> None:
    """TensorFlow's own words for a wrong dtype (what TF Serving answers, from the session's check)."""
    actual = DT_STRING if array.dtype.kind in "OSU" else tf_dtype(array.dtype)
    if actual != spec.dtype:
        raise InvalidInput(
            f"Expects arg[{position}] to be {_short_dtype(spec.dtype)} but {_short_dtype(actual)} is provided"
        )


def _short_dtype(number: int) -> str:
    name = dtype_name(number)
    return name[3:].lower() if name.startswith("DT_") else name


def output_aliases(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    if not output_filter:
        return sorted(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidInput(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise InvalidInput(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


# ---- classify / regress ------------------------------------------------------------------------


def serialized_examples(request_input: Any) -> np.ndarray:
    """tensorflow.serving.Input -> a string tensor of serialized tf.Examples (context merged in)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        items = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        context = request_input.example_list_with_context.context.SerializeToString()
        items = [context + e.SerializeToString() for e in request_input.example_list_with_context.examples]
    else:
        items = []
    if not items:
        raise InvalidInput("Input is empty.")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


# TF Serving's --enable_signature_method_name_check (default false): TF2 exports write every
# signature's method_name as predict, so classify / regress do not insist on their own by default.
METHOD_NAME_CHECK = {"enabled": False}


def _check_method(signature: Signature, method: str, kind: str) -> None:
    if METHOD_NAME_CHECK["enabled"] and signature.method_name != method:
        raise InvalidInput(f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")


def _single_string_input(signature: Signature) -> str:
    if len(signature.inputs) != 1:
        raise InvalidInput("Expected one input Tensor.")
    alias, spec = next(iter(signature.inputs.items()))
    if spec.dtype != DT_STRING:
        raise InvalidInput(f"Expected input Tensor of type string; got {dtype_name(spec.dtype)}")
    return alias


def classification_plan(signature: Signature) -> tuple[str, list[str]]:
    _check_method(signature, CLASSIFY_METHOD, "classification")
    alias = _single_string_input(signature)
    outputs: list[str] = [name for name in ("classes", "scores") if name in signature.outputs]
    if not outputs:
        raise InvalidInput("Expected classification signature outputs to contain classes or scores.")
    return alias, outputs


def classification_result(outputs: Mapping[str, np.ndarray], batch: int, result: Any) -> None:
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, tensor in (("classes", classes), ("scores", scores)):
        if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != batch):
            raise InvalidInput(
                f"Expected Tensor shape: [batch_size num_classes] but got [{','.join(map(str, tensor.shape))}]"
                if name == "scores" or tensor.ndim != 2
                else f"Tensor {name} has batch size {tensor.shape[0]} but expected {batch}"
            )
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for row in range(batch):
        classifications = result.classifications.add()
        for column in range(width):
            item = classifications.classes.add()
            if classes is not None:
                label = classes[row, column]
                item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                item.score = float(scores[row, column])


def regression_plan(signature: Signature) -> tuple[str, str]:
    _check_method(signature, REGRESS_METHOD, "regression")
    alias = _single_string_input(signature)
    if "outputs" not in signature.outputs:
        raise InvalidInput("No output Tensor with key 'outputs' in regression signature.")
    return alias, "outputs"


def regression_result(values: np.ndarray, batch: int, result: Any) -> None:
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)) or values.shape[0] != batch:
        raise InvalidInput(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"[{','.join(map(str, values.shape))}]"
        )
    for value in values.reshape(-1).tolist():
        result.regressions.add().value = value


def fill_model_spec(spec: Any, name: str, version: int, signature_name: str | None) -> None:
    spec.name = name
    spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name


def signature_def_map(model: Model) -> Any:
    mapping = protos.SignatureDefMap()
    for name, signature in model.signatures.items():
        mapping.signature_def[name].CopyFrom(signature.signature_def())
    return mapping


METHODS = {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD, "predict": PREDICT_METHOD}
