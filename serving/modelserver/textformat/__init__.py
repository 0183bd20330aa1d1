"""Protobuf text format checked the way tensorflow_model_server's C++ parser checks it.

TF Serving reads every config file with protobuf's C++ ``TextFormat`` parser (``util/proto_util.h``
``ParseProtoTextFile``). On a mistake that parser logs one line per error,
``Error parsing text-format <message type>: <line>:<column>: <message>``, and TF Serving stops with
``Invalid protobuf file: '<path>'``. Python's ``text_format`` finds the same mistakes but words and
places them differently (``1:1 : ...`` where C++ says ``1:12: ...``), so this module follows the C++
tokenizer (``io/tokenizer.cc``) and parser (``text_format.cc``, ``ParserImpl``) step by step: the same
tokens, the same errors in the same order, at the same positions, in the same words. It only checks;
``config.py`` builds the message with ``text_format`` once the check passes.

Parser settings are those of ``TextFormat::ParseFromString``: ``#`` comments, ``1.5f`` floats, a
space required after a number, no multi-line strings, no unknown fields or enum names, and a
non-repeated field given twice is an error.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor

from serving.modelserver.textformat.parser import check_text
from serving.modelserver.textformat.tokenizer import ParseProblem

__all__ = ["ParseProblem", "check"]


def check(data: bytes, descriptor: Descriptor, skip_unknown_any: bool = False) -> list[ParseProblem]:
    """The errors protobuf's C++ TextFormat parser reports for ``data`` as a ``descriptor`` message,
    in order; empty when it accepts it. With ``skip_unknown_any``, the contents of a
    google.protobuf.Any whose type this process does not know are only checked for syntax (the C++
    server knows more types, e.g. the SessionBundleConfig inside a platform config file)."""
    return check_text(data, descriptor, skip_unknown_any)
