"""Extract TF Serving's proto descriptors from the installed wheels, without importing TensorFlow.

The generated ``*_pb2.py`` modules of tensorflow-serving-api and tensorflow each embed their
serialized ``FileDescriptorProto`` as a bytes literal passed to ``AddSerializedFile``. Importing them
would import TensorFlow (``tensorflow_serving.apis`` imports ``tensorflow.core...``, whose package
``__init__`` loads the whole runtime), so we read the literal with ``ast`` instead and collect every
file the APIs depend on into one ``FileDescriptorSet``: ``serving/protos/tfserving.binpb``.

The Open Inference Protocol's (KServe v2) ``inference.GRPCInferenceService`` comes the same way from
tritonclient's generated modules (``grpc_service.proto`` and the ``model_config.proto`` it imports,
BSD-3-Clause, see ``serving/protos/NOTICE.md``) into ``serving/protos/inference.binpb``.

Run ``python -m serving.protos.build`` after upgrading tensorflow-serving-api or tritonclient; a unit
test checks the committed sets still match the installed wheels.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

# The proto files the project uses; their dependencies are followed automatically.
ROOT_FILES = (
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "tensorflow_serving/apis/prediction_log.proto",
    "tensorflow_serving/config/model_server_config.proto",
    "tensorflow_serving/config/platform_config.proto",
)
DEFAULT_OUTPUT = Path(__file__).with_name("tfserving.binpb")
# The v2 protocol's files, as tritonclient names them (proto file -> generated module in the wheel).
INFERENCE_FILES = {
    "model_config.proto": "tritonclient/grpc/model_config_pb2.py",
    "grpc_service.proto": "tritonclient/grpc/service_pb2.py",
}
INFERENCE_OUTPUT = Path(__file__).with_name("inference.binpb")


def _package_root(top_level: str) -> Path | None:
    spec = importlib.util.find_spec(top_level)  # top-level lookup: does not import the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def _serialized_from_pb2(path: Path) -> bytes:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and node.args
        ):
            value = ast.literal_eval(node.args[0])
            if isinstance(value, bytes):
                return value
    raise ValueError(f"{path}: no AddSerializedFile(b'...') call found; is this a protoc-generated module?")


def _load_file(proto_name: str, roots: list[Path]) -> descriptor_pb2.FileDescriptorProto:
    file_proto = descriptor_pb2.FileDescriptorProto()
    if proto_name.startswith("google/protobuf/"):
        module = importlib.import_module(proto_name[: -len(".proto")].replace("/", ".") + "_pb2")
        module.DESCRIPTOR.CopyToProto(file_proto)
        return file_proto
    relative = Path(proto_name[: -len(".proto")] + "_pb2.py")
    for root in roots:
        candidate = root / relative
        if candidate.is_file():
            file_proto.ParseFromString(_serialized_from_pb2(candidate))
            return file_proto
    searched = ", ".join(str(r) for r in roots)
    raise FileNotFoundError(
        f"{proto_name}: no {relative} under {searched}; install tensorflow-serving-api (pip install -e '.[ml]')"
    )


def build_descriptor_set(root_files: tuple[str, ...] = ROOT_FILES) -> descriptor_pb2.FileDescriptorSet:
    roots = [r for r in (_package_root("tensorflow_serving"), _package_root("tensorflow")) if r is not None]
    # TensorFlow vendors XLA's TSL protos (e.g. xla/tsl/protobuf/error_codes.proto) under compiler/.
    roots += [r / "tensorflow" / "compiler" for r in roots]
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        file_proto = _load_file(name, roots)
        for dependency in file_proto.dependency:
            visit(dependency)
        ordered.append(file_proto)  # dependencies first, as a DescriptorPool needs them

    for name in root_files:
        visit(name)
    return descriptor_pb2.FileDescriptorSet(file=ordered)


def build_inference_set() -> descriptor_pb2.FileDescriptorSet:
    """The v2 protocol's descriptors from the installed tritonclient (dependencies first)."""
    root = _package_root("tritonclient")
    if root is None:
        raise FileNotFoundError("tritonclient is not installed; see the v2 clients step in the Makefile")
    files = []
    for proto_name, module in INFERENCE_FILES.items():
        file_proto = descriptor_pb2.FileDescriptorProto()
        file_proto.ParseFromString(_serialized_from_pb2(root / module))
        if file_proto.name != proto_name:
            raise ValueError(f"{root / module}: holds {file_proto.name}, expected {proto_name}")
        files.append(file_proto)
    return descriptor_pb2.FileDescriptorSet(file=files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--inference-output", type=Path, default=INFERENCE_OUTPUT)
    args = parser.parse_args(argv)
    for build, output in ((build_descriptor_set, args.output), (build_inference_set, args.inference_output)):
        descriptor_set = build()
        data = descriptor_set.SerializeToString(deterministic=True)
        output.write_bytes(data)
        print(f"wrote {output}: {len(descriptor_set.file)} proto files, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
