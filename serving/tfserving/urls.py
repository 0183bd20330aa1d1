"""TF Serving's REST URLs (``http_rest_api_handler.cc``): which call a method and path ask for.

``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:(predict|classify|regress)`` and
``GET /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]``, matched case-insensitively on the
raw (still percent-encoded) path; anything else under ``/v1/`` is TF Serving's ``Malformed request``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from serving.errors import InvalidInput
from serving.predict import ModelSpec

PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
VERBS = ("predict", "classify", "regress", "status", "metadata")


@dataclass(frozen=True, slots=True)
class RestCall:
    """One TF Serving REST call: its verb and the model it names (signature still unknown)."""

    verb: str  # predict | classify | regress | status | metadata
    name: str
    version: int | None = None
    label: str | None = None

    def spec(self, signature: str = "") -> ModelSpec:
        return ModelSpec(self.name, self.version, self.label, signature)


def raw_path(scope: Mapping[str, Any]) -> str:
    """The request's path as sent (percent-encoding kept), without the query."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").partition("?")[0]
    return str(scope["path"])


def is_tf_serving_path(path: str) -> bool:
    return path[:4].lower() == "/v1/"


def parse(method: str, path: str) -> RestCall:
    """The call for ``method`` and raw ``path``; InvalidInput with TF Serving's message otherwise."""
    if method == "POST":
        match = PREDICTION_PATH.fullmatch(path)
        if match:
            name, version, label, verb = match.groups()
            return RestCall(verb.lower(), unquote(name), _version(version), _label(label))
    elif method == "GET":
        match = STATUS_PATH.fullmatch(path)
        if match:
            name, version, label, metadata = match.groups()
            if not name:
                raise InvalidInput("Missing model name in request.")
            verb = "metadata" if metadata else "status"
            return RestCall(verb, unquote(name), _version(version), _label(label))
    raise InvalidInput(f"Malformed request: {method} {path}")


def _version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version >= 2**63:  # an int64 in the protos, as TF Serving's SimpleAtoi
        raise InvalidInput(f"Failed to convert version: {text} to numeric.")
    return version


def _label(text: str | None) -> str | None:
    return unquote(text) if text else None
