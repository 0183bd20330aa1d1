"""TensorRT variant (``trt``): an engine built from the ONNX variant, FP16 and INT8 (calibrated on the
same representative set as TFLite int8), on a machine with an NVIDIA GPU and the tensorrt package.

TF-TRT (``TrtGraphConverterV2``) only exists in TensorFlow builds made with TensorRT (GPU builds up to
TF 2.17); ``tf.sysconfig.get_build_info()["is_tensorrt_build"]`` says whether this one was. TF 2.18+
was not, so the route here is ONNX -> TensorRT. Without a GPU the variant is skipped with one line.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from export.variants import ExportError, Skipped

MAX_BATCH = 64
WORKSPACE_BYTES = 1 << 30


def tf_trt_available() -> bool:
    import tensorflow as tf

    return bool(tf.sysconfig.get_build_info().get("is_tensorrt_build", False))


def gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidiactl").exists()


def unavailable_reason() -> str | None:
    """Why no TensorRT variant can be built here (None when an engine can be built)."""
    import tensorflow as tf

    tf_trt = "" if tf_trt_available() else f"TensorFlow {tf.__version__} was not built with TensorRT (no TF-TRT); "
    if not gpu_visible():
        return f"{tf_trt}no NVIDIA GPU is visible, so no TensorRT engine can be built"
    if importlib.util.find_spec("tensorrt") is None:
        return f"{tf_trt}the tensorrt Python package is not installed (pip install tensorrt)"
    return None


def write(onnx_model: Path, calibration: np.ndarray, destination: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise Skipped(reason)
    (destination / "model.plan").write_bytes(build_engine(onnx_model, calibration))


def build_engine(onnx_model: Path, calibration: np.ndarray) -> bytes:
    """Parse the ONNX graph, give the batch dimension a 1..64 profile, allow FP16 and INT8 kernels
    (INT8 scales from the calibrator; layers without an INT8 kernel stay in FP16/FP32)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implied (and deprecated) in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model.read_bytes()):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (16, *rest), (MAX_BATCH, *rest))
    config.add_optimization_profile(profile)
    config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if builder.platform_has_fast_int8:
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _calibrator(trt, calibration, network.get_input(0).name)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build an engine from the ONNX model (see its log above)")
    return bytes(serialized)


def _calibrator(trt: Any, images: np.ndarray, input_name: str, batch_size: int = 32) -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            raise ExportError("INT8 calibration needs cuda-python (pip install cuda-python)") from None

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.position = 0
            error, self.device = cudart.cudaMalloc(batch_size * images[0].nbytes)
            if int(error) != 0:
                raise ExportError(f"cudaMalloc failed for the INT8 calibrator: {error}")

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.position + batch_size > len(images):
                return None
            batch = np.ascontiguousarray(images[self.position : self.position + batch_size])
            self.position += batch_size
            cudart.cudaMemcpy(
                self.device, batch.ctypes.data, batch.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            )
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    if input_name != "image":
        raise ExportError(f"the ONNX model's input is {input_name!r}, expected 'image'")
    return Calibrator()


def write_tf_trt(saved_model: Path, destination: Path) -> None:
    """TF-TRT (FP16) into a SavedModel, for TensorFlow builds that have it (TF <= 2.17 GPU builds)."""
    from tensorflow.python.compiler.tensorrt import trt_convert

    converter = trt_convert.TrtGraphConverterV2(
        input_saved_model_dir=str(saved_model),
        input_saved_model_signature_key="serving_default",
        precision_mode=trt_convert.TrtPrecisionMode.FP16,
    )
    converter.convert()
    converter.save(str(destination))
