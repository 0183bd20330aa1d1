"""The model repository in TF Serving's layout: ``<repo>/<name>/<version>/``, versions immutable.

A new version is written in a hidden directory beside its final place and renamed into place, so a
server polling the repository (TF Serving or ours: both ignore non-numeric names) never sees half a
model; an interrupted write leaves no version behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

STAGING_PREFIX = ".staging-"


class RepositoryError(Exception):
    """The repository path or a servable in it is unusable; the message says which and why."""


def check_repo(repo: Path, create: bool = False) -> Path:
    if repo.exists() and not repo.is_dir():
        raise RepositoryError(f"{repo}: the model repository path is a file, not a directory; pass --repo DIR")
    if not repo.exists():
        if not create:
            raise RepositoryError(f"{repo}: model repository not found; train models first (python -m training)")
        repo.mkdir(parents=True)
    return repo


def versions(model_dir: Path) -> list[int]:
    """Version numbers present for a servable, ascending (only all-digit directory names count)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_dir: Path) -> int | None:
    found = versions(model_dir)
    return found[-1] if found else None


def latest_path(repo: Path, name: str) -> Path:
    version = latest_version(repo / name)
    if version is None:
        raise RepositoryError(
            f"{repo / name}: no versions of {name!r}; train it first (python -m training --model {name})"
        )
    return repo / name / str(version)


def _remove_stale_staging(model_dir: Path) -> None:
    for staging in model_dir.glob(STAGING_PREFIX + "*"):
        pid = staging.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a staging directory beside ``final``; rename it to ``final`` when the block succeeds.

    Fails if ``final`` already exists (versions are immutable). On any error the staging directory
    is removed and nothing appears at ``final``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f"{STAGING_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if final.exists():
            raise RepositoryError(f"{final} already exists; versions are never overwritten")
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def new_version(repo: Path, name: str) -> Iterator[tuple[int, Path]]:
    """Stage the next version of ``name``: yields (version, staging dir); renamed into place on success."""
    model_dir = check_repo(repo, create=True) / name
    model_dir.mkdir(exist_ok=True)
    _remove_stale_staging(model_dir)
    version = (latest_version(model_dir) or 0) + 1
    with staged_directory(model_dir / str(version)) as staging:
        yield version, staging
