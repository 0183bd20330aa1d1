"""Each image's entry point imports only the project packages its Dockerfile stages copy, and no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploy.checks.common import ROOT
from tests.unit.deploy.conftest import needs_locustfile

pytest.importorskip("dockerfile", reason="pip install dockerfile (buildkit's Dockerfile parser; dev extra)")

from deploy.checks.dockerfile import parse_stages

pytestmark = pytest.mark.slow  # starts processes
PACKAGES = ("serving", "training", "export", "loadtest")


def _copied_packages(builder: str) -> set[str]:
    stage = next(stage for stage in parse_stages(ROOT / "Dockerfile") if stage.name == builder)
    return {c.value[0].rstrip("/") for c in stage.commands if c.cmd == "COPY" and c.value[0].rstrip("/") in PACKAGES}


def _imported(code: str) -> dict[str, bool | list[str]]:
    probe = f"""
import json, sys
sys.argv = ["probe"]
{code}
ours = sorted({{name.split(".")[0] for name in sys.modules if name.split(".")[0] in {PACKAGES!r}}})
print(json.dumps({{"packages": ours, "tensorflow": "tensorflow" in sys.modules}}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gateway_image_has_what_the_gateway_imports() -> None:
    imported = _imported(
        "from serving.gateway.__main__ import main\n"
        "from serving.gateway.config import Settings\n"
        "from serving.gateway.main import create_app\n"
        "create_app(Settings(repo=None))"
    )
    assert imported == {"packages": ["serving"], "tensorflow": False}
    assert set(imported["packages"]) <= _copied_packages("build-gateway")


def test_loadtest_image_has_what_the_locustfile_imports() -> None:
    needs_locustfile()
    imported = _imported("import loadtest.locustfile")
    assert imported["tensorflow"] is False
    assert set(imported["packages"]) <= _copied_packages("build-loadtest"), imported
