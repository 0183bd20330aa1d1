"""report.md: the machine, the goals (met / missed, plainly), a table per target and step."""

from __future__ import annotations

from typing import Any

STEP_COLUMNS = (
    "users", "req/s", "images/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "Locust p50 / p99 ms",
    "failures", "wrong %", "server CPU %", "server peak RSS MiB", "Locust CPU %", "other CPU %",
)  # fmt: skip


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def verdict(goal: dict[str, Any], validity: str) -> str:
    if goal["met"] is None:
        return "not measured"
    word = "met" if goal["met"] else "**missed**"
    return word if not validity else f"{word} (not evidence: {validity})"


def step_row(step: dict[str, Any], duration: float) -> str:
    def percent(seconds: float) -> float:
        return 100.0 * seconds / (step.get("measured_s") or duration)

    locust = step.get("locust") or {}
    servers = step.get("server_cpu_s", {})
    cpu = ", ".join(f"{name} {percent(value):.0f}" for name, value in servers.items())
    rss = ", ".join(f"{name} {value:.0f}" for name, value in step.get("server_peak_rss_mib", {}).items())
    users = f"{step['users']}" + (f" @ {step['target_rps']:.0f} req/s offered" if step.get("target_rps") else "")
    locust_cpu = _f(percent(step["locust_cpu_s"]), 0)
    if step.get("locust_workers"):  # distributed: the master and each worker
        parts = ", ".join(f"{name} {percent(value):.0f}" for name, value in step["locust_cpu_by_process"].items())
        locust_cpu += f" ({parts})"
    cells = [
        users, _f(step["requests_per_s"]), _f(step["images_per_s"], 0), _f(step["p50_ms"], 2), _f(step["p95_ms"], 2),
        _f(step["p99_ms"], 2), _f(step["max_ms"], 1), f"{_f(locust.get('p50_ms'), 0)} / {_f(locust.get('p99_ms'), 0)}",
        f"{step['failures']}/{step['requests']}", _f(step.get("wrong_pct"), 2), cpu, rss,
        locust_cpu, _f(percent(step["other_cpu_s"]), 0),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def summary(results: dict[str, Any]) -> list[str]:
    lines = [
        "| target | servable, payload | peak req/s | images/s | at users | p50 ms | p99 ms | wrong % | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["targets"].items():
        steps = [s for s in entry.get("steps", []) if s["requests"]]
        kind = f"`{entry['servable']}`, {entry['payload']}" + (f" x{entry['batch']}" if entry["batch"] > 1 else "")
        if entry["status"] != "ok" or not steps:
            lines.append(f"| {name} | {kind} | - | - | - | - | - | - | {entry['status']} |")
            continue
        best = max(steps, key=lambda s: s["requests_per_s"])
        lines.append(
            f"| {name} | {kind} | {_f(best['requests_per_s'])} | {_f(best['images_per_s'], 0)} | {best['users']} | "
            f"{_f(best['p50_ms'], 2)} | {_f(best['p99_ms'], 2)} | {_f(best.get('wrong_pct'), 1)} | ok |"
        )
    return lines


def gateway_cpu(measured: dict[str, Any]) -> list[str]:
    if not measured:
        return []
    if not measured.get("runs"):
        return ["", f"Gateway CPU per request (fake upstream): {measured.get('error', 'not measured')}."]
    processes = measured.get("processes", 1)
    over = f"median over {processes} fresh gateway processes of each one's" if processes > 1 else "median of the"
    lines = [
        "",
        "Gateway CPU per request against the fake upstream (`python -m loadtest.gateway_cpu`: single-image "
        f"requests, the gateway's user + system CPU time over the requests, {over} rounds):",
        "",
        "| protocol | connections | CPU us / request | per process | rounds | req/s |",
        "|---|---|---|---|---|---|",
    ]
    for run in measured["runs"]:
        rounds = ", ".join(f"{value:.0f}" for value in run["us_per_request_rounds"])
        each = ", ".join(f"{value:.0f}" for value in run.get("us_per_request_processes", [run["us_per_request"]]))
        lines.append(
            f"| {run['protocol']} | {run['connections']} | {run['us_per_request']:.0f} | {each} | {rounds} | "
            f"{run['requests_per_s']:,.0f} |"
        )
    return lines


def one_caller(measured: dict[str, Any]) -> list[str]:
    if not measured:
        return []
    if "targets" not in measured:
        return ["", f"One caller, no Locust: {measured.get('error', 'not measured')}."]
    lines = [
        "",
        f"One caller, no Locust (`loadtest.one_user`'s clients, {measured['rounds']} rounds of "
        f"{measured['requests']} requests, targets alternating; medians over the rounds; the added-p50 goals "
        "are judged on these):",
        "",
        "| target | p50 ms | p99 ms | p50 per round | added p50 per round (ms) |",
        "|---|---|---|---|---|",
    ]
    added = measured.get("added_p50", {})
    for name, row in measured["targets"].items():
        rounds = ", ".join(f"{value:.2f}" for value in row["round_p50_ms"])
        extra = ", ".join(f"{value:+.2f}" for value in added[name]["round_ms"]) if name in added else "-"
        lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {rounds} | {extra} |")
    return lines


def render(results: dict[str, Any]) -> str:
    machine, settings = results["machine"], results["settings"]
    validity = results.get("validity_note", "")
    lines = [
        f"# Load test {results['started']}" + (" (quick)" if settings["quick"] else ""),
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores_logical']} logical cores "
        f"({machine['cores_physical']} physical), {machine['memory_gib']} GiB, {machine['os']}, "
        f"Python {machine['python']}, GPU: {machine['gpu']}. Load average at start "
        f"{machine['load_average_start']}, at end {machine.get('load_average_end')}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        f"Run: {settings['duration_s']:g} s per step, users {settings['users']}, model server batching "
        f"{'on' if settings['modelserver_batching'] else 'off'}"
        + (f" (flags {' '.join(settings['modelserver_flags'])})" if settings.get("modelserver_flags") else "")
        + "; Locust and every server share these cores"
        + (
            f"; Locust distributed: 1 master + {settings['locust_workers']} workers (CPU per process in the tables)."
            if settings.get("locust_workers")
            else "; Locust in one process."
        ),
        "",
        "Validity: " + ("quiet machine, full steps: the verdicts below stand." if not validity else
                        f"**{validity}: the numbers below are not evidence for or against the goals.**"),
        "",
        "## Goals",
        "",
        "| goal | measured | threshold | verdict | detail |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for goal in results.get("goals", []):
        lines.append(
            f"| {goal['goal']} | {_f(goal['value'], 2)} | {goal['threshold']:g} | {verdict(goal, validity)} | "
            f"{goal['detail']} |"
        )
    ceiling = results.get("ceiling") or {}
    if ceiling:
        text = f"{ceiling['images_per_s']:,.0f} images/s" if "images_per_s" in ceiling else ceiling.get("error", "")
        lines += ["", f"In-process ceiling (model server's TensorFlow runtime, batch 64, no server): {text}."]
    lines += gateway_cpu(results.get("gateway_cpu") or {})
    lines += one_caller(results.get("one_caller") or {})
    lines += ["", "## Summary: each target at its peak", "", *summary(results)]
    lines += [
        "",
        "## Targets",
        "",
        "Requests, rates and percentiles come from every response time the locustfile recorded (exact); "
        "Locust's own (whole milliseconds, from its CSV) are shown beside them. "
        "CPU % is of one core (200% = both cores here), from the step's first request to its end; "
        "'other' is CPU used by processes outside the test.",
    ]
    for name, entry in results["targets"].items():
        lines += ["", f"### {name}", ""]
        lines.append(
            f"{entry['server']}, {entry['protocol']}, servable `{entry['servable']}`, payload {entry['payload']}, "
            f"{entry['batch']} image(s) per request. Status: {entry['status']}."
        )
        if entry["status"] != "ok":
            lines += ["", "```", entry["reason"].strip()[-3000:], "```"]
            continue
        lines += ["", "| " + " | ".join(STEP_COLUMNS) + " |", "|" + "---|" * len(STEP_COLUMNS)]
        steps = entry["steps"] + ([entry["at_70pct"]] if entry.get("at_70pct") else [])
        lines += [step_row(step, settings["duration_s"]) for step in steps]
        for step in steps:
            for message in step.get("failure_messages", []):
                lines.append(f"\nFailures at {step['users']} users: {message}")
    for name, entry in results["targets"].items():
        if entry.get("profile"):
            lines += ["", f"## Profile: {name} at {entry['profile']['users']} users (py-spy, 100 Hz)", ""]
            profiled: dict[str, Any] = next((s for s in entry["steps"] if s["users"] == entry["profile"]["users"]), {})
            if profiled.get("profiler_cpu_s"):
                spent = ", ".join(f"{k} {v:.1f} s" for k, v in profiled["profiler_cpu_s"].items())
                lines += [f"py-spy's own CPU in that step (not counted as 'other'): {spent}.", ""]
            for server, text in entry["profile"].items():
                if server != "users":
                    lines += [f"**{server}**", "", text, ""]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in results.get("plots", [])]
    lines += ["", "Raw Locust CSV and HTML per step: `locust/`; server logs: `logs/`.", ""]
    return "\n".join(lines)
