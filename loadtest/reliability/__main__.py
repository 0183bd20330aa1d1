"""Run the reliability checks and write bench/reliability/<timestamp>/report.md.

    python -m loadtest.reliability [--quick] [--repo models] [--checks fuzz,hostile,...] [--out DIR]

Exit status 0 when every check passed, 1 when one failed, 2 on bad arguments or missing models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import shlex
import sys
import time
import traceback
from pathlib import Path

from loadtest import procs
from loadtest.machine import describe as describe_machine
from loadtest.reliability import report
from loadtest.reliability.common import SERVABLE, CheckResult, Context

# run order: cheap input checks first, the long soak near the end
CHECKS = ("auth", "hostile", "fuzz", "reload", "faults", "shutdown", "soak")


def check_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in CHECKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown check(s) {unknown}; choose from: {', '.join(CHECKS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short version of every check (seconds each)")
    parser.add_argument("--repo", type=Path, default=Path("models"), help="model repository (needs cnn)")
    parser.add_argument("--checks", type=check_names, default=list(CHECKS), help=f"subset of {','.join(CHECKS)}")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default bench/reliability/<ts>)")
    args = parser.parse_args(argv)
    model = args.repo / SERVABLE
    if not model.is_dir() or not any(p.name.isdigit() for p in model.iterdir()):
        print(
            f"error: {model} has no model version; train one first: "
            f"python -m training --model cnn --profile quick --repo {args.repo}",
            file=sys.stderr,
        )
        return 2
    started = dt.datetime.now(dt.UTC)
    out = args.out or procs.ROOT / "bench" / "reliability" / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    context = Context(args.repo.resolve(), out.resolve(), args.quick)
    results: list[CheckResult] = []
    clock = time.monotonic()
    for name in args.checks:
        print(f"[reliability] {name} ...", flush=True)
        module = importlib.import_module(f"loadtest.reliability.{name}")
        check_started = time.monotonic()
        try:
            result: CheckResult = module.run(context)
        except Exception as error:  # a broken check is a failed row, not a lost report
            result = CheckResult(name, failures=[f"the check itself crashed: {error!r}"])
            (out / f"{name}-traceback.txt").write_text(traceback.format_exc())
        finally:
            context.stop_all()
        result.seconds = result.seconds or time.monotonic() - check_started
        results.append(result)
        print(f"[reliability] {name}: {report.status(result)} in {result.seconds:.0f} s", flush=True)
        for failure in result.failures:
            print(f"    - {failure}", flush=True)
    header = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": describe_machine(),
        "repo": str(args.repo),
        "command": shlex.join(["python", "-m", "loadtest.reliability", *(argv if argv is not None else sys.argv[1:])]),
        "seconds": time.monotonic() - clock,
    }
    path = report.write(out, results, header)
    print(f"[reliability] report: {path}", flush=True)
    return 0 if all(r.passed or r.skipped for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
