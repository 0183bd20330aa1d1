"""What each REST protocol's codec costs per single-image request, in this process (no server).

    python -m loadtest.codec_cost [--repeat 2000] [--batch 1]

For the load test's own request bodies (``loadtest.payloads``: real Fashion-MNIST images) and an
answer of the model contract's shape (``probabilities`` float32 [batch, 10], ``class_id`` int64
[batch]), times the gateway's decode of the body into arrays and its encode of the answer, for TF
Serving's JSON rows (``serving.tfserving``) and the Open Inference Protocol's JSON tensors and
binary tensor data (``serving.v2``, with the signature check the gateway makes). This is the part of
the gateway's work per request that depends on the protocol; the rest (HTTP, the event loop, the
upstream call, metrics, access log) is shared. Prints a table and one JSON line; best of 5 runs each.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from loadtest import payloads
from serving.tensors import DT
from serving.tfserving import decode, encode
from serving.v2 import metadata, rest

SERVABLE = "cnn"
SIGNATURE = metadata.Signature(
    {"image": metadata.TensorSpec("image", "FP32", (-1, 28, 28, 1))},
    {
        "class_id": metadata.TensorSpec("class_id", "INT64", (-1,)),
        "probabilities": metadata.TensorSpec("probabilities", "FP32", (-1, 10)),
    },
)
DT_FLOAT = {"image": DT["DT_FLOAT"].number}


def answer(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(batch, 10)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"class_id": probabilities.argmax(axis=1).astype(np.int64), "probabilities": probabilities}


def tf_json(body: bytes, outputs: dict[str, np.ndarray]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    def decoder() -> Any:
        numeric = decode.NumericBody.read(body)
        if numeric is None:
            raise ValueError("the instances body does not take the numeric fast path")
        return numeric.decode(DT_FLOAT)

    request_format = decoder().request_format
    return decoder, lambda: encode.encode_predict_response(outputs, request_format)


def v2(payload: payloads.Payload, outputs: dict[str, np.ndarray]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    length = dict(payload.headers).get("Inference-Header-Content-Length")

    def decoder() -> Any:
        request = rest.decode_request(payload.body, length, SERVABLE, "")
        metadata.check_request(request, SIGNATURE)
        return request

    binary = decoder().binary_outputs
    items = [(name, SIGNATURE.outputs[name].datatype, outputs[name], binary) for name in sorted(outputs)]
    return decoder, lambda: rest.encode_response(SERVABLE, "1", "", items)


KINDS = ("instances", "v2-json", "v2-binary")


def codecs(batch: int) -> dict[str, tuple[payloads.Payload, Callable[[], Any], Callable[[], Any]]]:
    """payload kind -> (its first payload, decode it, encode the answer)."""
    outputs = answer(batch)
    found = {}
    for kind in KINDS:
        payload = payloads.build(kind, SERVABLE, batch, count=1)[0]
        decoder, encoder = tf_json(payload.body, outputs) if kind == "instances" else v2(payload, outputs)
        found[kind] = (payload, decoder, encoder)
    return found


def best_us(function: Callable[[], Any], repeat: int) -> float:
    return min(timeit.repeat(function, number=repeat, repeat=5)) / repeat * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.codec_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000, help="calls per timing (default 2000)")
    parser.add_argument("--batch", type=int, default=1, help="images per request (default 1)")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for kind, (payload, decoder, encoder) in codecs(args.batch).items():
        decode_us, encode_us = best_us(decoder, args.repeat), best_us(encoder, args.repeat)
        rows.append({"payload": kind, "body_bytes": len(payload.body), "decode_us": decode_us, "encode_us": encode_us})
    print(f"{'payload':<10} {'body bytes':>10} {'decode us':>10} {'encode us':>10} {'total us':>9}")
    for row in rows:
        total = row["decode_us"] + row["encode_us"]
        print(
            f"{row['payload']:<10} {row['body_bytes']:>10} {row['decode_us']:>10.1f} {row['encode_us']:>10.1f} "
            f"{total:>9.1f}"
        )
    print(json.dumps({"batch": args.batch, "repeat": args.repeat, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
