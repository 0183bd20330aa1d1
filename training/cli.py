"""python -m training: train models into a TF Serving model repository."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training.data import DATASETS, DatasetError
from training.models.registry import TRAINABLE_NAMES
from training.profiles import PROFILES
from training.repository import RepositoryError, check_repo

MODEL_CHOICES = (*TRAINABLE_NAMES, "ensemble", "all")


def default_repo() -> Path:
    return Path(os.environ.get("TENSORGATE_REPO", "models"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--model", default="all", help=f"one of: {', '.join(MODEL_CHOICES)} (default: all)")
    parser.add_argument("--profile", default="quick", help=f"one of: {', '.join(PROFILES)} (default: quick)")
    parser.add_argument(
        "--repo", type=Path, default=None, help="model repository (default: $TENSORGATE_REPO or ./models)"
    )
    parser.add_argument("--dataset", default="fashion_mnist", help=f"one of: {', '.join(DATASETS)}")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding the four IDX files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (all models)")
    parser.add_argument("--train-size", type=int, default=None, help="override the profile's training subset size")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (DatasetError, RepositoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no partial version was left in the repository", file=sys.stderr)
        return 130
    for result in results:
        print(
            f"{result.name:12s} v{result.version}  test accuracy {result.test_accuracy:.4f} "
            f"({result.test_size:,} images)  {result.path}"
        )
    return 0


def run(args: argparse.Namespace) -> list:  # type: ignore[type-arg]
    # Validate every name before the slow imports and the data load.
    if args.model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(MODEL_CHOICES)}")
    if args.profile not in PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose one of: {', '.join(PROFILES)}")
    if args.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {args.dataset!r}; choose one of: {', '.join(DATASETS)}")
    repo = check_repo(args.repo or default_repo(), create=True)
    profile = PROFILES[args.profile].with_overrides(args.epochs, args.train_size)
    names = list(TRAINABLE_NAMES) if args.model == "all" else [args.model]
    if args.model == "ensemble":
        from training.ensemble import load_member, MEMBERS  # noqa: I001

        for member in MEMBERS:  # fail before loading data when a member is missing
            load_member(repo, member)

    from training.data import load_dataset
    from training.ensemble import train_ensemble
    from training.train import train_model

    data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    results = [train_model(name, data, profile, repo, args.seed) for name in names if name != "ensemble"]
    if args.model in ("ensemble", "all"):
        results.append(train_ensemble(data, repo, args.seed, profile.test_size))
    return results
