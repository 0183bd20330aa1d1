"""GetModelStatus and GetModelMetadata answers as TF Serving's REST API prints them."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from serving import protos
from serving.errors import Internal


def _json(message: Any, preserve_names: bool) -> str:
    return json_format.MessageToJson(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=preserve_names,
        indent=1,
        descriptor_pool=protos.POOL,
    )


def status_json(response: Any) -> bytes:
    """A GetModelStatusResponse (protobuf's JSON names, one-space indent)."""
    return _json(response, preserve_names=False).encode()


def metadata_json(response: Any) -> bytes:
    """A GetModelMetadataResponse: model_spec, then the unpacked SignatureDefMap, joined as TF Serving
    does itself (http_rest_api_handler.cc)."""
    signatures = protos.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(signatures):
        raise Internal("Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.")
    spec = _json(response.model_spec, preserve_names=True)
    signature_text = _json(signatures, preserve_names=True)
    return ('{\n"model_spec":' + spec + ',\n"metadata": {"signature_def": ' + signature_text + "}\n}\n").encode()
