"""Summaries of an interleaved A/B run (loadtest.gateway_ab): per configuration, per factor, as markdown.

A row is one measurement: ``repeat``, ``protocol``, one value per factor, ``us_per_request`` (gateway
CPU), ``requests_per_s`` and ``other_processes_cores``.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

NOISE_RATIO = 0.03  # a paired effect smaller than 3% is called noise, whatever its sign count
SIGNIFICANT_P = 0.05


def sign_test_p(wins: int, pairs: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven if either side were as likely."""
    if pairs == 0:
        return 1.0
    tail = sum(math.comb(pairs, k) for k in range(min(wins, pairs - wins) + 1)) / 2**pairs
    return min(1.0, 2 * tail)


def _key(value: Any) -> Any:
    """A hashable stand-in for a factor's value (a dict of gRPC arguments, say)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": min(values), "max": max(values)}


def summarize(rows: list[dict[str, Any]], factor_keys: list[str], protocol: str) -> list[dict[str, Any]]:
    """Each configuration's median and range over its repeats, cheapest (median CPU) first."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row["protocol"] == protocol:
            groups.setdefault(tuple(_key(row[key]) for key in factor_keys), []).append(row)
    summary = [
        {
            "config": {name: group[0][name] for name in factor_keys},
            "n": len(group),
            "us_per_request": _spread([row["us_per_request"] for row in group]),
            "requests_per_s": _spread([row["requests_per_s"] for row in group]),
            "other_processes_cores": round(statistics.median(row["other_processes_cores"] for row in group), 3),
        }
        for group in groups.values()
    ]
    return sorted(summary, key=lambda entry: entry["us_per_request"]["median"])


def effects(rows: list[dict[str, Any]], factors: dict[str, list[Any]], protocol: str) -> list[dict[str, Any]]:
    """Per factor, each level against the first: ratios of pairs that differ in that factor only and
    were measured in the same repeat (CPU: < 1 is cheaper; rate: > 1 is faster)."""
    index = {(row["repeat"], *(_key(row[key]) for key in factors)): row for row in rows if row["protocol"] == protocol}
    found = []
    for position, key in enumerate(factors):
        baseline = factors[key][0]
        for level in factors[key][1:]:
            cpu, rate = [], []
            for combo, row in index.items():
                if combo[1 + position] != _key(baseline):
                    continue
                other = index.get((*combo[: 1 + position], _key(level), *combo[2 + position :]))
                if other is not None:
                    cpu.append(other["us_per_request"] / row["us_per_request"])
                    rate.append(other["requests_per_s"] / row["requests_per_s"])
            if not cpu:
                continue
            cheaper, dearer = sum(ratio < 1 for ratio in cpu), sum(ratio > 1 for ratio in cpu)
            p = sign_test_p(cheaper, cheaper + dearer)  # ties (same CPU to the clock tick) say nothing
            found.append(
                {
                    "factor": key,
                    "baseline": baseline,
                    "level": level,
                    "pairs": len(cpu),
                    "cpu_ratio": _ratios(cpu),
                    "rate_ratio": _ratios(rate),
                    "cheaper_pairs": cheaper,
                    "dearer_pairs": dearer,
                    "tied_pairs": len(cpu) - cheaper - dearer,
                    "sign_test_p": float(f"{p:.3g}"),
                    "verdict": verdict(statistics.median(cpu), p),
                }
            )
    return found


def _ratios(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def verdict(median_ratio: float, p: float) -> str:
    """Noise unless the sign test says otherwise; a consistent effect under NOISE_RATIO is called small."""
    change = median_ratio - 1
    if p >= SIGNIFICANT_P:
        return "within noise"
    if abs(change) < NOISE_RATIO:
        return f"{abs(change):.1%} {'less' if change < 0 else 'more'} CPU: consistent but under {NOISE_RATIO:.0%}"
    return f"{abs(change):.0%} {'less' if change < 0 else 'more'} CPU"


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_text(value)}" for key, value in config.items())


def _rebuilt(result: dict[str, Any]) -> str:
    if "rebuilt_utc" not in result:
        return ""
    return f" Tables rebuilt from the measured rows on {result['rebuilt_utc']} (`--report`)."


def markdown(result: dict[str, Any]) -> str:
    described = result["machine"]
    lines = [
        "# Gateway process settings: interleaved A/B",
        "",
        f"`{result['command']}`, {result.get('started_utc', '?')}, {result.get('seconds', '?')} s; "
        f"{described['cpu_model']}, "
        f"{described['cores_logical']} logical cores, Python {described['python']}; load average "
        f"{described['load_average_start']} at start, {result.get('load_average_end', '?')} at the end. "
        f"{result['connections']} connections, "
        f"{result['requests']['rest']} REST / {result['requests']['grpc']} gRPC single-image requests per "
        "measurement, a fresh gateway per measurement, configurations in a shuffled order per repeat, "
        "against the fake upstream. CPU: the gateway's user + system time per request." + _rebuilt(result),
        "",
    ]
    for protocol, summary in result["summary"].items():
        lines += [
            f"## {protocol}: per configuration (median over repeats, range min-max)",
            "",
            "| configuration | n | CPU us / request | range | req/s | range | other processes (cores) |",
            "|---|---|---|---|---|---|---|",
        ]
        for entry in summary:
            cpu, rate = entry["us_per_request"], entry["requests_per_s"]
            lines.append(
                f"| {_config_text(entry['config'])} | {entry['n']} | {cpu['median']:.1f} | {cpu['min']:.1f}-"
                f"{cpu['max']:.1f} | {rate['median']:,.0f} | {rate['min']:,.0f}-{rate['max']:,.0f} | "
                f"{entry['other_processes_cores']:.2f} |"
            )
        lines += [
            "",
            f"## {protocol}: per factor (paired within a repeat; ratio = level / baseline)",
            "",
            "| factor | level vs baseline | pairs | CPU ratio median (range) | cheaper / dearer / tied | sign-test p | "
            "req/s ratio median (range) | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for effect in result["effects"][protocol]:
            cpu, rate = effect["cpu_ratio"], effect["rate_ratio"]
            lines.append(
                f"| {effect['factor']} | {_text(effect['level'])} vs {_text(effect['baseline'])} | "
                f"{effect['pairs']} | {cpu['median']:.3f} ({cpu['min']:.3f}-{cpu['max']:.3f}) | "
                f"{effect['cheaper_pairs']} / {effect['dearer_pairs']} / {effect['tied_pairs']} | "
                f"{effect['sign_test_p']:.2g} | "
                f"{rate['median']:.3f} ({rate['min']:.3f}-{rate['max']:.3f}) | {effect['verdict']} |"
            )
        lines.append("")
    for failure in result.get("failures", []):
        lines.append(f"Failed: {failure.splitlines()[0]}")
    lines.append(
        f"Verdict: an effect with sign-test p >= {SIGNIFICANT_P} is called noise, one under {NOISE_RATIO:.0%} small. "
        "Pairs from one repeat share the machine's state, so p is a guide."
    )
    return "\n".join(lines) + "\n"
