"""TF Serving's request semantics over one loaded model: signature lookup, input checks, and turning
classification / regression signatures' tensors into results. Synchronous and runtime-agnostic; the
messages are TF Serving's (predict_util.cc, classifier.cc, regressor.cc, multi_inference.cc)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving import protos
from serving.errors import FailedPrecondition, InvalidInput
from serving.modelserver.runtimes.base import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    Model,
    Signature,
)
from serving.tensors import DT_STRING, dtype_name


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


def check_shapes(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Runtimes other than TensorFlow get their inputs checked against the signature's shapes first
    (TensorFlow checks them itself, and TF Serving leaves that to it). A fully static signature (an old
    TFLite export such as half_plus_two's [1,1]) is resized to any input, as TF Serving's TFLite
    session does; one with a dynamic dimension is held to its shape."""
    for alias, array in inputs.items():
        spec = signature.inputs[alias]
        if spec.shape is None or -1 not in spec.shape:
            continue
        fits = array.ndim == len(spec.shape) and all(e in (-1, a) for e, a in zip(spec.shape, array.shape, strict=True))
        if not fits:
            raise InvalidInput(
                f"Input {alias} has shape [{','.join(map(str, array.shape))}] but the signature expects "
                f"[{','.join(map(str, spec.shape))}]"
            )


def fits_shapes(signature: Signature, inputs: Mapping[str, np.ndarray]) -> bool:
    for alias, array in inputs.items():
        shape = signature.inputs[alias].shape
        if shape is None:
            continue
        if array.ndim != len(shape) or any(e not in (-1, a) for e, a in zip(shape, array.shape, strict=True)):
            return False
    return True


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
