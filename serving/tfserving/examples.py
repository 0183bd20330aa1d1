"""TF Serving's REST classify / regress bodies -> tf.Example protos (``FillClassifyRegressRequestFromJson``)."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

from serving import protos
from serving.errors import InvalidInput
from serving.tfserving.decode import is_b64, signature_name_of
from serving.tfserving.values import FLOAT32_MAX, document_text, json_type, value_to_string

_INT64_MAX = 2**63 - 1
_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def decode_examples(document: Mapping[str, Any], method: str = "classify") -> tuple[str, list[Any], Any | None]:
    """(signature_name, examples, context or None) as tf.Example protos (``serving.protos.Example``)."""
    signature_name = signature_name_of(document)
    context = None
    if "context" in document:
        context = _example(document["context"])
    if "examples" not in document:
        raise InvalidInput(
            f"JSON Value: {document_text(document)} When "
            f"method is {method}, key 'examples' is expected "
            "and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise InvalidInput(f"JSON Value: {document_text(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidInput(f"JSON Value: {document_text(document)} 'examples' value is an empty array")
    return signature_name, [_example(item) for item in examples], context


def _example(value: Any) -> Any:
    if not isinstance(value, dict):
        raise InvalidInput(f"Example must be JSON object but got JSON {json_type(value)}")
    example = protos.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
    return example


def _add_feature_value(value: Any, name: str, feature: Any) -> None:
    def need(kind: str) -> None:
        current = feature.WhichOneof("kind")
        if current is not None and current != kind:
            raise InvalidInput(f"Unexpected element type in feature: {name} expecting type: {_KINDS[current]}")

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_b64(value)):
        raise InvalidInput(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        need("bytes_list")
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput("Unable to base64 decode") from None
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float):
        need("float_list")
        if math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise InvalidInput(
                f"Cannot convert JSON value: {value_to_string(value)} to float without loss of precision."
            )
        feature.float_list.value.append(value)
    else:
        need("int64_list")
        if value > _INT64_MAX:
            raise InvalidInput(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)
