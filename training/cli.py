"""python -m training: train models into a TF Serving model repository."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training.data import DATASETS, DatasetError
from training.names import TRAINABLE_NAMES
from training.precision import PRECISIONS, enable_onednn
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
    parser.add_argument(
        "--dataset",
        default="fashion_mnist",
        help=f"one of: {', '.join(DATASETS)} (idx: your own 28x28 grayscale IDX files in --data-dir)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding the four IDX files")
    parser.add_argument(
        "--labels", type=Path, default=None, help="--dataset idx: class names, one per line (default: 0..N-1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (all models)")
    parser.add_argument("--train-size", type=int, default=None, help="override the profile's training subset size")
    parser.add_argument(
        "--precision",
        default="auto",
        help=f"one of: {', '.join(PRECISIONS)} "
        "(auto: bfloat16 on CPUs with AMX or AVX512_BF16 and oneDNN on, else float32)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_onednn()  # before TensorFlow is imported; TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins
    started = time.monotonic()
    try:
        results = run(args)
    except (DatasetError, RepositoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no partial version was left in the repository", file=sys.stderr)
        return 130
    from training.train import duration

    for result in results:
        print(
            f"{result.name:12s} v{result.version}  test accuracy {result.test_accuracy:.4f} "
            f"({result.test_size:,} images)  {duration(result.seconds):>8s}  {result.path}"
        )
    print(f"done in {duration(time.monotonic() - started)}", flush=True)
    return 0


def run(args: argparse.Namespace) -> list:  # type: ignore[type-arg]
    # Validate every name before the slow imports and the data load.
    if args.model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(MODEL_CHOICES)}")
    if args.profile not in PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose one of: {', '.join(PROFILES)}")
    if args.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {args.dataset!r}; choose one of: {', '.join(DATASETS)}")
    if args.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {args.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    repo = check_repo(args.repo or default_repo(), create=True)
    profile = PROFILES[args.profile].with_overrides(args.epochs, args.train_size)
    names = list(TRAINABLE_NAMES) if args.model == "all" else [args.model]
    print("starting TensorFlow ...", flush=True)
    stage = time.monotonic()
    from training import precision
    from training.data import load_dataset
    from training.ensemble import MEMBERS, load_member, train_ensemble
    from training.train import duration, train_model

    policy = precision.resolve(args.precision)
    print(f"TensorFlow ready in {duration(time.monotonic() - stage)}; training precision {policy}", flush=True)
    if args.model == "ensemble":
        for member in MEMBERS:  # fail before loading data when a member is missing
            load_member(repo, member)
    stage = time.monotonic()
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed, labels_file=args.labels)
    print(
        f"loaded {data.name} from {data.directory} in {duration(time.monotonic() - stage)}: "
        f"{len(data.x_train):,} training, {len(data.x_val):,} validation, {len(data.x_test):,} test images, "
        f"{data.classes} classes",
        flush=True,
    )
    results = [train_model(name, data, profile, repo, args.seed, policy) for name in names if name != "ensemble"]
    if args.model in ("ensemble", "all"):
        results.append(train_ensemble(data, repo, args.seed, profile.test_size))
    return results
