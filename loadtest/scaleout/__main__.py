"""Run the scale-out check and write bench/scaleout/<timestamp>/report.md.

    python -m loadtest.scaleout [--quick] [--repo models] [--out DIR]

Exit status 0 when it passed, 1 when it failed, 2 on bad arguments or missing models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from loadtest import procs
from loadtest.machine import describe as describe_machine
from loadtest.reliability.common import CheckResult, Context
from loadtest.scaleout import report, scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3+1 servers, seconds per phase (the test suite's run)")
    parser.add_argument("--repo", type=Path, default=Path("models"), help="model repository (needs cnn)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default bench/scaleout/<ts>)")
    args = parser.parse_args(argv)
    model = args.repo / "cnn"
    if not model.is_dir() or not any(p.name.isdigit() for p in model.iterdir()):
        print(
            f"error: {model} has no model version; train one first: "
            f"python -m training --model cnn --profile quick --repo {args.repo}",
            file=sys.stderr,
        )
        return 2
    started = dt.datetime.now(dt.UTC)
    out = args.out or procs.ROOT / "bench" / "scaleout" / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    context = Context(args.repo.resolve(), out.resolve(), args.quick)
    clock = time.monotonic()
    print("[scaleout] starting model servers, DNS, gateways, Locust ...", flush=True)
    try:
        result, details = scenario.run(context)
    except Exception as error:  # a broken run is a failed report, not a lost one
        result, details = CheckResult("scaleout", failures=[f"the run itself crashed: {error!r}"]), {}
        (out / "traceback.txt").write_text(traceback.format_exc())
    finally:
        context.stop_all()
        procs.stop_all()
    header = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": describe_machine(),
        "repo": str(args.repo),
        "command": shlex.join(["python", "-m", "loadtest.scaleout", *(argv if argv is not None else sys.argv[1:])]),
        "seconds": time.monotonic() - clock,
        "commit": _commit(),
    }
    path = report.write(out, result, details, header)
    print(f"[scaleout] {'pass' if result.passed else 'FAIL'} in {header['seconds']:.0f} s; report: {path}", flush=True)
    for failure in result.failures:
        print(f"    - {failure}", flush=True)
    return 0 if result.passed else 1


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=procs.ROOT, capture_output=True, text=True)
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
