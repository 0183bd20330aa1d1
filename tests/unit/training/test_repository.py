from __future__ import annotations

import pytest

from training.repository import RepositoryError, check_repo, latest_version, new_version, versions


def test_versions_count_up_and_ignore_staging(tmp_path):
    for expected in (1, 2):
        with new_version(tmp_path, "cnn") as (version, staging):
            assert version == expected
            (staging / "saved_model.pb").write_bytes(b"x")
            assert not (tmp_path / "cnn" / str(version)).exists()  # invisible until complete
    (tmp_path / "cnn" / ".staging-3-999999").mkdir()
    (tmp_path / "cnn" / "notes").mkdir()
    assert versions(tmp_path / "cnn") == [1, 2]
    assert latest_version(tmp_path / "cnn") == 2


def test_interrupted_write_leaves_no_version(tmp_path):
    with pytest.raises(KeyboardInterrupt), new_version(tmp_path, "lstm") as (_, staging):
        (staging / "saved_model.pb").write_bytes(b"half")
        raise KeyboardInterrupt
    assert versions(tmp_path / "lstm") == []
    assert list((tmp_path / "lstm").iterdir()) == []


def test_stale_staging_of_a_dead_process_is_removed(tmp_path):
    stale = tmp_path / "cnn" / ".staging-1-999999999"
    stale.mkdir(parents=True)
    with new_version(tmp_path, "cnn") as (version, staging):
        (staging / "x").write_text("y")
    assert version == 1 and not stale.exists()


def test_repo_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "models"
    path.write_text("oops")
    with pytest.raises(RepositoryError, match="is a file, not a directory"):
        check_repo(path, create=True)
