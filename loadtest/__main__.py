"""The benchmark runner: every target on the same images, in one run, with a report.

    python -m loadtest [--quick] [--targets naive,handmade,...|all] [--users 1,8,32,64] [--duration 30s] [--workers N]

Writes bench/results/<timestamp>/: Locust CSV and HTML per step (locust/), server logs (logs/),
report.json, report.md and two PNG plots.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from loadtest.procs import ROOT
from loadtest.runner import Settings, run
from loadtest.targets import ALL_NAMES

QUICK_USERS = [4]
QUICK_DURATION_S = 3.0


def duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m, 45)") from None


def user_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of user counts: {text!r} (e.g. 1,8,32,64)") from None
    if not steps or steps[0] < 1:
        raise argparse.ArgumentTypeError("user counts must be positive")
    return steps


def target_names(text: str) -> list[str]:
    if text == "all":
        return list(ALL_NAMES)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in ALL_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target(s) {unknown}; choose from: {', '.join(ALL_NAMES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION_S:g} s steps at {QUICK_USERS} users")
    targets_help = f"comma-separated from {', '.join(ALL_NAMES)}; or all (default)"
    parser.add_argument("--targets", type=target_names, default=list(ALL_NAMES), help=targets_help)
    parser.add_argument("--users", type=user_steps, default=None, help="concurrency steps (default 1,8,32,64)")
    parser.add_argument("--duration", type=duration, default=None, help="per step (default 30s)")
    parser.add_argument(
        "--repo", type=Path, default=Path(os.environ.get("TENSORGATE_REPO", "models")), help="model repository"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="a <timestamp> folder goes here")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "tensorgate" / "loadtest", help="converted models"
    )
    parser.add_argument("--no-modelserver-batching", action="store_true", help="model server without --enable_batching")
    parser.add_argument(
        "--modelserver-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="a flag for the model server, e.g. --modelserver-flag=--tensorflow_intra_op_parallelism=2 (repeatable)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the servers at gateway-rest/-grpc's top step")
    parser.add_argument(
        "--workers", type=int, default=0, help="Locust in distributed mode: one master and N worker processes"
    )
    parser.add_argument("--start-timeout", type=duration, default=240.0, help="per server (default 240s)")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be 0 (one Locust process) or more")
    for flag in args.modelserver_flag:
        if not flag.startswith("--") or "=" not in flag:
            parser.error(f"--modelserver-flag expects --name=value (the model server's flag), got {flag!r}")
    repo = args.repo.resolve()
    if not (repo / "cnn").is_dir():
        parser.error(f"{repo}: no cnn model; train one (python -m training) or pass --repo / TENSORGATE_REPO")
    settings = Settings(
        repo=repo,
        out=args.out.resolve(),
        targets=args.targets,
        users=args.users or (QUICK_USERS if args.quick else [1, 8, 32, 64]),
        duration=args.duration or (QUICK_DURATION_S if args.quick else 30.0),
        quick=args.quick,
        modelserver_batching=not args.no_modelserver_batching,
        modelserver_flags=args.modelserver_flag,
        start_timeout=args.start_timeout,
        profile=args.profile,
        workers=args.workers,
        cache=args.cache,
        log=lambda line: print(line, flush=True),
    )
    try:
        run(settings)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
