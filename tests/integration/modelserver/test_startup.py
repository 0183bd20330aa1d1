"""Start-up as tensorflow_model_server reports it: what it prints, where, and the exit status.

Sources: ``model_servers/main.cc`` (flag parsing, "unknown argument", "Failed to start server. Error:
..." on stdout, ``return -1``), ``model_servers/server.cc`` Server::BuildAndStart (the checks and
their order), ``util/proto_util.h`` ParseProtoTextFile ("Invalid protobuf file: '<path>'"), protobuf's
``text_format.cc`` (the "Error parsing text-format" lines on stderr) and
``xla/tsl/util/command_line_flags.cc`` (flag values).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from serving import protos
from tests.integration.modelserver.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving.modelserver", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_model_config_as_tensorflow_model_server_test_expects(tfs_testdata: Path) -> None:
    """tensorflow_model_server_test.py testBadModelConfig greps stderr for this text."""
    bad = tfs_testdata / "bad_model_config.txt"
    result = run(f"--model_config_file={bad}")
    assert result.returncode == 255
    assert (
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:12: "
        'Message type "tensorflow.serving.ModelServerConfig" has no field named "improperly".'
    ) in result.stderr
    assert result.stdout.endswith(f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{bad}'\n")


@pytest.mark.parametrize(
    ("flag", "text", "type_name", "line"),
    [
        ("--batching_parameters_file", "max_batch_size: 64\n", "BatchingParameters", '1:17: Expected "{", found "64".'),
        (
            "--monitoring_config_file",
            "prometheus_config { enable: yes }\n",
            "MonitoringConfig",
            '1:33: Invalid value for boolean field "enable". Value: "yes".',
        ),
        ("--ssl_config_file", "server_key: 1\n", "SSLConfig", "1:13: Expected string, got: 1"),
        (
            "--platform_config_file",
            'platform_configs { key: "tensorflow" value { source_adapter_config { '
            "[type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] { legacy_config { } }\n",
            "PlatformConfigMap",
            "2:1: Expected identifier, got: ",
        ),
        (
            "--tensorflow_session_config_file",
            "intra_op_parallelism_threads: -\n",
            "ConfigProto",
            "2:1: Expected integer, got: ",
        ),
    ],
)
def test_every_config_file_fails_in_tf_servings_words(
    tmp_path: Path, flag: str, text: str, type_name: str, line: str
) -> None:
    path = tmp_path / "bad.config"
    path.write_text(text)
    extra = ["--enable_batching"] if flag == "--batching_parameters_file" else []
    extra += ["--rest_api_port=8501"] if flag == "--monitoring_config_file" else []
    result = run(f"--model_base_path={tmp_path}", f"{flag}={path}", *extra)
    assert result.returncode == 255, result.stdout + result.stderr
    package = "tensorflow" if type_name == "ConfigProto" else "tensorflow.serving"
    assert f"Error parsing text-format {package}.{type_name}: {line}" in result.stderr
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{path}'" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "INVALID_ARGUMENT: Both server_options.model_base_path and server_options.model_config_file are empty!"),
        (
            ["--model_base_path=/m", "--batching_parameters_file=/b"],
            "INVALID_ARGUMENT: server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.",
        ),
        (
            [
                "--model_base_path=/m",
                "--tensorflow_session_parallelism=1",
                "--tensorflow_intra_op_parallelism=1",
                "--tensorflow_inter_op_parallelism=1",
            ],
            "INVALID_ARGUMENT: Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all.",
        ),
        (["--model_config_file=/no/such.config"], "NOT_FOUND: /no/such.config; No such file or directory"),
        (["--model_base_path=/m", "--port=0"], "INVALID_ARGUMENT: server_options.grpc_port is not set."),
    ],
)
def test_start_failures_print_build_and_start_status(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 255
    assert result.stdout.endswith(f"Failed to start server. Error: {message}\n")


def test_flag_value_that_does_not_parse_prints_usage_and_exits_255() -> None:
    result = run("--model_base_path=/m", "--port=eighty")
    assert result.returncode == 255
    assert "Couldn't interpret value eighty for flag port." in result.stderr
    assert result.stdout.startswith("usage: python -m serving.modelserver\nFlags:\n\t--port=8500")
    assert run("--help").returncode == 255


def test_version_prints_main_cc_lines() -> None:
    result = run("--version")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("TensorFlow ModelServer: ") and lines[1].startswith("TensorFlow Library: ")


def test_unknown_argument_is_printed_and_the_server_starts_anyway(launch, tfs_testdata: Path) -> None:
    """main.cc: ``if (argc != 1) std::cout << "unknown argument: " << argv[1] << "\\n" << usage;`` and
    it goes on to BuildAndStart (tensorflow::port::InitMain leaves argv alone)."""
    server = launch(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}",
            "--no_such_flag=1",
            "--use_tflite_model=true",  # an older TF Serving flag, gone from main.cc
        ]
    )
    assert "unknown argument: --no_such_flag=1\nusage: python -m serving.modelserver\n" in server.log()
    answer = httpx.post(f"{server.rest}/v1/models/half_plus_two:predict", json={"instances": [2.0]}, timeout=30)
    assert answer.json() == {"predictions": [3.0]}


def test_same_rest_and_grpc_port_skips_rest(tmp_path: Path, tfs_testdata: Path) -> None:
    """server.cc: LOG(ERROR) and no REST API; gRPC keeps serving."""
    port = free_port()
    base = tfs_testdata / "saved_model_half_plus_two_cpu"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.modelserver",
            f"--port={port}",
            f"--rest_api_port={port}",
            f"--model_base_path={base}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = protos.MODEL_SERVICE.stub(channel)
            request = protos.GetModelStatusRequest()
            request.model_spec.name = "default"
            while True:
                try:
                    status = stub.GetModelStatus(request, timeout=5)
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline and process.poll() is None
                    time.sleep(0.5)
        assert status.model_version_status[0].version == 123
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert (
        "server_options.http_port cannot be same as grpc_port. Please use a different port for HTTP/REST API. "
        "Skipped exporting HTTP/REST API."
    ) in output
    assert "Exporting HTTP/REST API" not in output


def test_rest_port_that_cannot_listen_leaves_grpc_serving(launch, tfs_testdata: Path) -> None:
    """server.cc: when the HTTP server does not start, LOG(ERROR) "Failed to start HTTP Server at
    localhost:PORT" and BuildAndStart still succeeds."""
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.modelserver",
                f"--port={free_port()}",
                f"--rest_api_port={port}",
                f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output = ""
            deadline = time.monotonic() + 120
            assert process.stdout is not None
            while "Failed to start HTTP Server" not in output:
                line = process.stdout.readline()
                assert line and time.monotonic() < deadline, output
                output += line
            time.sleep(1)
            assert process.poll() is None  # still serving gRPC
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert f"Failed to start HTTP Server at localhost:{port}" in output
