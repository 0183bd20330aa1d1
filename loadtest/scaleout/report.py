"""report.md and report.json of a scale-out run: shares per phase, times per event, failures per event."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.reliability.common import CheckResult
from loadtest.reliability.report import machine_line


def _seconds(values: dict[str, Any] | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"{name}: {'never' if value is None else f'{value:.2f} s'}" for name, value in values.items())


def _share_rows(phase: dict[str, Any]) -> list[str]:
    rows = []
    even = 1.0 / len(phase["live"])
    for member in phase["live"]:
        by_gateway = " / ".join(
            f"{shares.get(member, 0.0):.1%}" for _, shares in sorted(phase["gateway_shares"].items())
        )
        calls = phase["server_calls"].get(member, 0.0)
        share = phase["shares"].get(member, 0.0)
        rows.append(f"| {phase['name']} | {member} | {calls:.0f} | {share:.1%} | {even:.1%} | {by_gateway} |")
    return rows


def write(out: Path, result: CheckResult, details: dict[str, Any], header: dict[str, Any]) -> Path:
    (out / "report.json").write_text(json.dumps({**header, "result": asdict(result), "details": details}, indent=2))
    sizes = details.get("sizes", {})
    status = "pass" if result.passed else f"FAIL ({len(result.failures)})"
    lines = [
        f"# Scale-out report, {header['started']}",
        "",
        f"Mode: {'quick' if header['quick'] else 'full'}. Machine: {machine_line(header['machine'])}. "
        f"Command: `{header['command']}` at commit {header.get('commit', '?')}. Total {header['seconds']:.0f} s. "
        f"**Result: {status}.**",
        "",
        f"What ran: {result.what}. {result.amount}. Model servers on 127.0.0.2 ... sharing one gRPC port behind "
        f"one name served by a DNS server on loopback; each gateway's upstream is `dns://<that server>/<name>:<port>` "
        f"with `resolve_s: {sizes.get('resolve_s')}`; Locust paced at {sizes.get('rate')} req/s per gateway "
        f"({sizes.get('users')} REST + {sizes.get('users')} gRPC users each), "
        f"{sizes.get('phase_s')} s measured per phase.",
        "",
        "## Failures",
        "",
        "none" if not result.failures else "\n".join(f"- {failure}" for failure in result.failures),
        "",
        "## Shares of calls per model server",
        "",
        "Counted by each model server (`:tensorflow:serving:request_latency` gRPC Predict count) and, per gateway, "
        "by the gateway's `tensorgate_gateway_upstream_calls_total` (gateway-a / gateway-b).",
        "",
        "| phase | model server | calls it answered | share | even share | share of gateway-a / gateway-b calls |",
        "|---|---|---|---|---|---|",
    ]
    for phase in details.get("phases", []):
        lines += _share_rows(phase)
    lines += [
        "",
        "## Events",
        "",
        "| event | what was measured | result |",
        "|---|---|---|",
        "| add | published to first call, per gateway (bound: resolve_s + 1 s) | "
        f"{_seconds(details.get('first_call_s'))} |",
        f"| drain | removed from DNS + SIGTERM at once: exit status; until each gateway dropped the target | "
        f"exit {details.get('drain_exit_code')}; {_seconds(details.get('drain_target_gone_s'))} |",
        f"| kill | SIGKILL to ejection, per gateway | {_seconds(details.get('kill_to_ejection_s'))} |",
    ]
    routing = details.get("routing") or {}
    if routing:
        lines.append(
            f"| routing | {routing['keys']} request keys x {routing['answers_per_key']} answers "
            "(2 gateways x REST, gRPC) | "
            f"{routing['keys_with_one_servable']} keys got one servable everywhere, {routing['keys_split']} split; "
            f"share of keys {routing['share_of_keys']} (weights {routing['weights']}); "
            f"{routing['failed_calls']} failed calls |"
        )
    lines += [
        "",
        "## Requests per event (Locust, every request judged)",
        "",
        "Retries: upstream calls the gateway sent again to another model server after UNAVAILABLE "
        "(`tensorgate_gateway_upstream_retries_total`).",
        "",
        "| event window | gateway | requests | failed | wrong answers | retries | outcomes |",
        "|---|---|---|---|---|---|---|",
    ]
    for event, gateways in details.get("events", {}).items():
        for gateway, counts in gateways.items():
            outcomes = ", ".join(f"{k}: {v}" for k, v in counts["outcomes"].items())
            lines.append(
                f"| {event} | {gateway} | {counts['requests']} | {counts['failed']} | {counts['wrong']} | "
                f"{'-' if counts.get('retries') is None else counts['retries']} | {outcomes} |"
            )
    lines += ["", "## CPU", "", "| process | CPU s | share of one core over its life |", "|---|---|---|"]
    for group in ("locust_cpu", "process_cpu"):
        for name, cpu in (details.get(group) or {}).items():
            if cpu:
                label = f"Locust ({name})" if group == "locust_cpu" else name
                lines.append(f"| {label} | {cpu['cpu_s']:.1f} | {cpu['core_share']:.1%} |")
    lines += ["", "Every figure: `report.json`; process logs and Locust's per-request events: `logs/`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
