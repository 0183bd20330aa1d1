"""Pools the on/off throughput ratios of several tracing_overhead runs made with the same tracing code.

python bench/tracing/pool.py RUN_DIR ...   (each holding result.json; prints per run and pooled, per protocol)
The interval is the mean's, from the t distribution (normal beyond 120 pairs), as tracing_overhead
computes it for one run. Pairs of different runs are not quite alike (the host, the CPU), so it also
prints the stricter figure that treats each run's mean as one observation.
"""

import json
import sys
from pathlib import Path

from loadtest.tracing_overhead import GOAL, _spread

pooled: dict[str, list[float]] = {}
run_means: dict[str, list[float]] = {}
for folder in sys.argv[1:]:
    result = json.loads((Path(folder) / "result.json").read_text())
    for name, item in result["summary"].items():
        ratios = item["throughput_ratios"]
        pooled.setdefault(name, []).extend(ratios)
        spread = _spread(ratios)
        run_means.setdefault(name, []).append(spread["mean"])
        print(
            f"{folder} ({result['cpu']}, {result['time']}) {name}: {len(ratios)} pairs, mean {spread['mean']:.3f} "
            f"({spread['mean_95'][0]:.3f}-{spread['mean_95'][1]:.3f}), median {spread['median']:.3f}"
        )
for name, ratios in pooled.items():
    spread = _spread(ratios)
    below = sum(ratio < 1 - GOAL for ratio in ratios)
    print(
        f"pooled {name}: {len(ratios)} pairs, mean {spread['mean']:.4f} (95% {spread['mean_95'][0]:.4f}-"
        f"{spread['mean_95'][1]:.4f}), median "
        f"{spread['median']:.4f}, {below} below {1 - GOAL:.2f}; goal (loss <= {GOAL:.0%}) met reliably: "
        f"{spread['mean_95'][0] >= 1 - GOAL}"
    )
for name, means in run_means.items():
    if len(means) > 1:
        spread = _spread(means)
        print(
            f"run means {name}: {len(means)} runs, mean {spread['mean']:.4f} (95% {spread['mean_95'][0]:.4f}-"
            f"{spread['mean_95'][1]:.4f})"
        )
