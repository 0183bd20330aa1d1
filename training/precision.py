"""Training precision: bfloat16 mixed precision where the CPU multiplies bfloat16 in hardware.

With TensorFlow's oneDNN kernels on, convolutions and matrix products in bfloat16 run on the CPU's own
bfloat16 instructions: AMX tiles (Intel Sapphire Rapids and later) or AVX512_BF16 dot products (AMD Zen 4,
Intel Cooper Lake). Measured on 2 cores (README "Accuracy"): on an Intel Xeon with AMX the CNN trains about
1.3x faster than in float32; on an AMD EPYC with AVX512_BF16 the 48-96-192 CNN takes 196 ms per step
against 301 in float32 (oneDNN on) and 427 with oneDNN off. Without such instructions, or with oneDNN off
(``TF_ENABLE_ONEDNN_OPTS=0``), TensorFlow emulates bfloat16 and is over 10x slower, so ``auto`` keeps
float32 there. Variables stay float32 either way, and each model's last layer computes in float32, so the
saved models take and return float32 exactly as before.

``python -m training`` turns oneDNN on for its own process (`enable_onednn`) unless the caller set
``TF_ENABLE_ONEDNN_OPTS``: TensorFlow enables it by default only on some Intel CPUs, and on the AMD EPYC
above every model trains faster with it, in float32 too (CNN 1.4x, transformer 1.5x, LSTM 1.1x).
"""

from __future__ import annotations

import os
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")


BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # /proc/cpuinfo flags of hardware bfloat16 multiplies


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and BF16_FLAGS & set(line.split()) for line in text.splitlines())


def enable_onednn() -> None:
    """Ask TensorFlow for its oneDNN kernels, before it is imported, unless the caller chose already."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def onednn_enabled() -> bool:
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow that moved it: assume the slow path
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def resolve(precision: str) -> str:
    """``auto`` | ``float32`` | ``bfloat16`` -> the Keras dtype policy name to train with."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bfloat16" if cpu_has_bf16() and onednn_enabled() else "float32"
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"
