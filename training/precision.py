"""Training precision: bfloat16 mixed precision where the CPU multiplies bfloat16 in hardware.

On a CPU with AMX (Intel Sapphire Rapids and later) and TensorFlow's oneDNN kernels on, convolutions and
matrix products in bfloat16 run on the AMX tiles: the CNN trains about 1.3x and the LSTM's convolutional
front 1.1x faster than in float32 (measured, README "Accuracy"). Without AMX or with oneDNN off
(``TF_ENABLE_ONEDNN_OPTS=0``), TensorFlow emulates bfloat16 and is over 10x slower, so ``auto`` keeps
float32 there. Variables stay float32 either way, and each model's last layer computes in float32, so the
saved models take and return float32 exactly as before.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


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
        precision = "bfloat16" if cpu_has_amx_bf16() and onednn_enabled() else "float32"
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"
