"""Reading Locust's CSV output, computing the issue's goal ratios, and writing report.json / report.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from loadtest import plots

BUSY_SHARE = 0.10  # other processes using more than this share of all cores make a run "not quiet"


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def read_locust(prefix: Path, batch: int) -> dict[str, Any]:
    """One step's numbers. Requests, rate and percentiles come from the locustfile's exact samples
    (``<prefix>_answers.json``); Locust's aggregated CSV row (whole milliseconds, written once a
    second) is kept beside them as ``locust``, and is the fallback when the samples are missing."""
    stats_path = Path(f"{prefix}_stats.csv")
    rows = list(csv.DictReader(stats_path.open(newline=""))) if stats_path.is_file() else []
    total = next((row for row in rows if row.get("Name") == "Aggregated"), {})
    locust = {
        "requests": int(_number(total.get("Request Count")) or 0),
        "failures": int(_number(total.get("Failure Count")) or 0),
        "requests_per_s": _number(total.get("Requests/s")) or 0.0,
        "p50_ms": _number(total.get("50%")),
        "p95_ms": _number(total.get("95%")),
        "p99_ms": _number(total.get("99%")),
        "max_ms": _number(total.get("Max Response Time")),
    }
    extra_path = Path(f"{prefix}_answers.json")
    extra = json.loads(extra_path.read_text()) if extra_path.is_file() else {}
    exact = next(iter(extra.get("requests", {}).values()), None)
    step: dict[str, Any] = dict(locust)
    if exact is not None:
        requests = exact["count"] + exact["failures"]
        step.update(
            requests=requests,
            failures=exact["failures"],
            requests_per_s=requests / exact["window_s"] if exact["window_s"] > 0 else 0.0,
            window_start=exact.get("window_start"),
            p50_ms=exact.get("p50"),
            p95_ms=exact.get("p95"),
            p99_ms=exact.get("p99"),
            max_ms=exact.get("max"),
        )
    step.update(
        images_per_s=step["requests_per_s"] * batch,
        locust=locust,
        csv=f"{prefix.name}_stats.csv",
        html=f"{prefix.name}.html",
    )
    answers = list(extra.get("answers", {}).values())
    step["images_checked"] = sum(a["images"] for a in answers)
    step["wrong_answers"] = sum(a["wrong"] for a in answers)
    step["wrong_pct"] = 100.0 * step["wrong_answers"] / step["images_checked"] if step["images_checked"] else None
    errors = next(iter(extra.get("errors", {}).values()), None)
    failures_path = Path(f"{prefix}_failures.csv")
    if errors:
        step["failure_messages"] = [f"{count}x {message}" for message, count in list(errors.items())[:3]]
    elif failures_path.is_file():
        failed = sorted(csv.DictReader(failures_path.open(newline="")), key=lambda r: -int(r.get("Occurrences", 0)))
        step["failure_messages"] = [f"{row['Occurrences']}x {row['Error'][:200]}" for row in failed[:3]]
    return step


def ok_steps(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entry = results["targets"].get(name)
    if not entry or entry["status"] != "ok":
        return []
    return [s for s in entry["steps"] if s["requests"] and s["failures"] <= 0.01 * s["requests"]]


def peak(results: dict[str, Any], name: str, key: str = "requests_per_s") -> dict[str, Any] | None:
    steps = ok_steps(results, name)
    return max(steps, key=lambda s: s[key]) if steps else None


def at_users(results: dict[str, Any], name: str, users: int) -> dict[str, Any] | None:
    return next((s for s in ok_steps(results, name) if s["users"] == users), None)


def p50(step: dict[str, Any] | None) -> float | None:
    return step["p50_ms"] if step else None


def validity(results: dict[str, Any]) -> str:
    """Empty when the numbers may be judged; else why not."""
    if results["settings"].get("quick"):
        return "quick run (seconds per step)"
    if results.get("interrupted"):
        return "interrupted run"
    cores = results["machine"].get("cores_logical") or 1
    shares = [
        s["other_cpu_s"] / (cores * (s.get("measured_s") or results["settings"]["duration_s"]))
        for entry in results["targets"].values()
        for s in entry.get("steps", [])
    ]
    if shares and max(shares) > BUSY_SHARE:
        return f"machine busy (other processes used up to {100 * max(shares):.0f}% of all cores during a step)"
    if (results["machine"].get("load_average_start") or [0])[0] >= 1.0:
        return f"machine busy at start (load average {results['machine']['load_average_start'][0]})"
    return ""


def _goal(
    key: str, text: str, value: float | None, threshold: float, lower_is_better: bool, detail: str
) -> dict[str, Any]:
    met = None if value is None else (value <= threshold if lower_is_better else value >= threshold)
    return {"id": key, "goal": text, "value": value, "threshold": threshold, "met": met, "detail": detail}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    gateway, handmade, naive = (peak(results, n) for n in ("gateway-rest", "handmade", "naive"))

    def rate(step: dict[str, Any] | None) -> float | None:
        return step["requests_per_s"] if step else None

    onnx = rate(peak(results, "gateway-rest-onnx"))
    same_runtime = (
        f"; with the same runtime as handmade (gateway-rest-onnx) {onnx:.0f} req/s = "
        f"{_ratio(onnx, rate(handmade)) or 0:.2f}x"
        if onnx and rate(handmade)
        else ""
    )
    found.append(
        _goal(
            "gateway_vs_handmade",
            "gateway-rest peak req/s >= 1.0x handmade",
            _ratio(rate(gateway), rate(handmade)),
            1.0,
            False,
            f"gateway-rest {rate(gateway) or 0:.0f} req/s, handmade {rate(handmade) or 0:.0f} req/s (peaks)"
            + same_runtime,
        )
    )
    found.append(
        _goal(
            "gateway_vs_naive",
            "gateway-rest peak req/s >= 75x naive",
            _ratio(rate(gateway), rate(naive)),
            75.0,
            False,
            f"gateway-rest {rate(gateway) or 0:.0f} req/s, naive {rate(naive) or 0:.1f} req/s (peaks)",
        )
    )
    found += _v2_goals(results, rate)
    for name in ("gateway-rest", "gateway-grpc"):
        ratios = []
        for step in ok_steps(results, name):
            peer = at_users(results, "peer", step["users"])
            if peer and peer["requests_per_s"]:
                ratios.append((step["users"], step["requests_per_s"] / peer["requests_per_s"]))
        detail = ", ".join(f"{u} users {r:.2f}x" for u, r in ratios) or "no common step"
        worst = min((r for _, r in ratios), default=None)
        found.append(
            _goal(
                f"{name}_vs_peer",
                f"{name} >= 3x peer (LitServe) at the same concurrency (every step)",
                worst,
                3.0,
                False,
                detail,
            )
        )
    base = p50(at_users(results, "modelserver-grpc", 1))
    one_caller = results.get("one_caller") or {}
    for name in ("gateway-grpc", "gateway-rest"):
        mine = p50(at_users(results, name, 1))
        added = mine - base if mine is not None and base is not None else None
        locust = (
            f"p50 {mine:.2f} ms vs {base:.2f} ms (1 user)"
            if mine is not None and base is not None
            else "needs a 1-user step of both targets"
        )
        detail = locust
        interleaved = (one_caller.get("added_p50") or {}).get(name)
        if interleaved is not None:
            # Interleaved rounds of one plain caller judge the goal; a single Locust step each is shown beside.
            added = interleaved["median_ms"]
            rows = one_caller["targets"]
            each = ", ".join(f"{value:+.2f}" for value in interleaved["round_ms"])
            detail = (
                f"one caller, median of {one_caller['rounds']} interleaved rounds of {one_caller['requests']}: "
                f"p50 {rows[name]['p50_ms']:.2f} ms vs {rows['modelserver-grpc']['p50_ms']:.2f} ms, added per "
                f"round {each} ms; Locust's 1-user steps: {locust.removesuffix(' (1 user)')}"
            )
        found.append(
            _goal(
                f"{name}_added_p50",
                f"{name} adds <= 1 ms to p50 over modelserver-grpc at 1 user",
                added,
                1.0,
                True,
                detail,
            )
        )
    at70 = (results["targets"].get("gateway-rest") or {}).get("at_70pct")
    tail = None
    if at70 and at70.get("requests"):
        median, p99 = at70["p50_ms"], at70["p99_ms"]
        tail = _ratio(p99, median)
        detail = (
            f"{at70['requests_per_s']:.0f} req/s (offered {at70['target_rps']:.0f}, 70% of the "
            f"{at70['peak_requests_per_s']:.0f} peak), p50 {median or 0:.2f} ms, p99 {p99 or 0:.2f} ms"
        )
    else:
        detail = "not measured"
    found.append(_goal("tail_at_70pct", "gateway-rest at 70% of peak: p99 <= 4x p50", tail, 4.0, True, detail))
    batched = peak(results, "gateway-grpc-batch64", "images_per_s")
    ceiling = (results.get("ceiling") or {}).get("images_per_s")
    images = batched["images_per_s"] if batched else None
    found.append(
        _goal(
            "batch_vs_ceiling",
            "gateway batch-64 images/s >= 50% of the in-process ceiling",
            _ratio(images, ceiling),
            0.5,
            False,
            f"gateway {images or 0:.0f} images/s, in-process {ceiling or 0:.0f} images/s",
        )
    )
    rest = gateway_cpu_run(results, "rest", 32)
    found.append(
        _goal(
            "gateway_cpu_per_request",
            "gateway CPU per single-image REST predict <= 400 us (fake upstream, 32 connections)",
            rest["us_per_request"] if rest else None,
            400.0,
            True,
            gateway_cpu_detail(results),
        )
    )
    return found


def _v2_goals(results: dict[str, Any], rate: Any) -> list[dict[str, Any]]:
    """The Open Inference Protocol's goals: its binary REST and its gRPC front against TF Serving's."""
    binary, rest, handmade = (rate(peak(results, n)) for n in ("gateway-v2-binary", "gateway-rest", "handmade"))
    v2_grpc, grpc = (rate(peak(results, n)) for n in ("gateway-v2-grpc", "gateway-grpc"))
    return [
        _goal(
            "v2_binary_vs_rest",
            "gateway-v2-binary peak req/s >= 1.5x gateway-rest (TF Serving JSON)",
            _ratio(binary, rest),
            1.5,
            False,
            f"gateway-v2-binary {binary or 0:.0f} req/s, gateway-rest {rest or 0:.0f} req/s (peaks)",
        ),
        _goal(
            "v2_binary_vs_handmade",
            "gateway-v2-binary peak req/s >= 1.0x handmade",
            _ratio(binary, handmade),
            1.0,
            False,
            f"gateway-v2-binary {binary or 0:.0f} req/s, handmade {handmade or 0:.0f} req/s (peaks)",
        ),
        _goal(
            "v2_grpc_vs_grpc",
            "gateway-v2-grpc peak req/s >= 0.9x gateway-grpc",
            _ratio(v2_grpc, grpc),
            0.9,
            False,
            f"gateway-v2-grpc {v2_grpc or 0:.0f} req/s, gateway-grpc {grpc or 0:.0f} req/s (peaks)",
        ),
    ]


def gateway_cpu_run(results: dict[str, Any], protocol: str, connections: int) -> dict[str, Any] | None:
    runs = (results.get("gateway_cpu") or {}).get("runs", [])
    return next((r for r in runs if r["protocol"] == protocol and r["connections"] == connections), None)


def gateway_cpu_detail(results: dict[str, Any]) -> str:
    measured = results.get("gateway_cpu") or {}
    if not measured.get("runs"):
        return measured.get("error", "not measured")
    processes = measured.get("processes", 1)
    text = ", ".join(
        f"{run['protocol']} x{run['connections']} connections {run['us_per_request']:.0f} us"
        for run in measured["runs"]
    )
    return f"{text} (median of {processes} gateway processes)" if processes > 1 else text


def write(results: dict[str, Any], directory: Path) -> None:
    from loadtest import markdown

    results["goals"] = goals(results)
    results["valid"] = validity(results) == ""
    results["validity_note"] = validity(results)
    results["plots"] = plots.draw(results, directory)
    (directory / "report.json").write_text(json.dumps(results, indent=2, default=str))
    (directory / "report.md").write_text(markdown.render(results))


def load(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return loaded
