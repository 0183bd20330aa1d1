"""Bad input to `python -m training`: one clear line, non-zero exit, nothing half-written."""

from __future__ import annotations

import pytest

from training.cli import main


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


def test_unknown_model_dataset_and_profile(capsys, tmp_path):
    repo = str(tmp_path / "m")
    code, err = run(capsys, "--model", "resnet", "--repo", repo)
    assert code == 2 and err == "error: unknown model 'resnet'; choose one of: cnn, lstm, transformer, ensemble, all"
    code, err = run(capsys, "--dataset", "cifar", "--repo", repo)
    assert code == 2 and err == "error: unknown dataset 'cifar'; choose one of: fashion_mnist, mnist, idx"
    code, err = run(capsys, "--profile", "huge", "--repo", repo)
    assert code == 2 and err == "error: unknown profile 'huge'; choose one of: quick, full"


def test_repository_path_that_is_a_file(capsys, tmp_path):
    path = tmp_path / "models"
    path.write_text("not a directory")
    code, err = run(capsys, "--repo", str(path))
    assert code == 2 and "is a file, not a directory" in err and str(path) in err


def test_ensemble_before_its_members(capsys, tmp_path):
    code, err = run(capsys, "--model", "ensemble", "--repo", str(tmp_path / "m"))
    assert code == 2
    assert err.startswith("error: ") and "the ensemble needs a trained 'cnn'" in err
    assert not (tmp_path / "m" / "ensemble").exists() or not any((tmp_path / "m" / "ensemble").iterdir())


def test_missing_and_corrupt_dataset(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(capsys, "--model", "cnn", "--repo", str(tmp_path / "m"), "--data-dir", str(empty))
    assert code == 2 and "no IDX files found in" in err and "apt-get install dataset-fashion-mnist" in err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (corrupt / name).write_bytes(b"\x00\x00\x08\x03garbage")
    code, err = run(capsys, "--model", "cnn", "--repo", str(tmp_path / "m"), "--data-dir", str(corrupt))
    assert code == 2 and "train-images-idx3-ubyte" in err and "truncated IDX header" in err
    assert not (tmp_path / "m" / "cnn").exists() or not any((tmp_path / "m" / "cnn").iterdir())


@pytest.mark.parametrize("argv", [["--help"]])
def test_help_exits_zero(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
