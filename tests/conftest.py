from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TFS_TESTDATA = ROOT.parent / "shared" / "fixtures" / "tf_serving_testdata"


@pytest.fixture(scope="session")
def tfs_testdata() -> Path:
    """TF Serving's own test models (read in place from ../shared; never copied into the project)."""
    if not (TFS_TESTDATA / "saved_model_half_plus_two_cpu").is_dir():
        pytest.skip(f"TF Serving's test models are not at {TFS_TESTDATA} (CI has ../shared beside the clone)")
    return TFS_TESTDATA
