"""The ``kserve`` package's v2 clients (InferenceRESTClient with binary and JSON tensors, InferenceGRPCClient)
against the gateway in front of the real model server, answers compared with TF Serving's Predict.

kserve cannot be installed beside this project (it pins protobuf<7, psutil<6 and python-dateutil<3 and
pulls kubernetes and pandas), so its clients run in another interpreter named by ``KSERVE_PYTHON`` (one
that has kserve and numpy; see docs/gateway.md); without it this test is skipped.
"""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
import pytest

from loadtest import targets
from tests.integration.gateway.conftest import ROOT
from tests.integration.gateway.test_v2_clients import KEY, _check, images, stack, tf_serving_answers  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("KSERVE_PYTHON"), reason="KSERVE_PYTHON (an interpreter with kserve) unset"),
]


def test_kserve_clients_infer_what_tf_serving_answers(
    stack: dict[str, targets.Server],  # noqa: F811
    images: np.ndarray,  # noqa: F811
    tf_serving_answers: dict,  # noqa: F811
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, images)
    names = ["cnn", "cnn_int8", "ensemble", "vote"]
    command = [os.environ["KSERVE_PYTHON"], "-m", "tests.integration.gateway.kserve_clients"]
    command += [stack["gateway"].rest, stack["gateway"].grpc, KEY, ",".join(names)]
    done = subprocess.run(command, input=buffer.getvalue(), capture_output=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    found = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert found["rest_live"] and found["rest_ready"] and found["rest_model_ready"]
    assert found["grpc_live"] and found["grpc_model_ready"]
    for client in ("rest", "rest_json", "grpc"):
        for name in names:
            answer = found[client][name]
            dtypes = {output: array.dtype for output, array in tf_serving_answers[name].items()}
            arrays = {output: np.asarray(values, dtype=dtypes[output]) for output, values in answer.items()}
            _check(tf_serving_answers, name, arrays)
