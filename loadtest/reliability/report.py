"""report.md (one row per check) and report.json for a reliability run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.reliability.common import CheckResult


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _figures(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        elif isinstance(value, (dict, list)):
            continue  # in report.json
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def machine_line(machine: dict[str, Any]) -> str:
    load = machine.get("load_average_start") or []
    return (
        f"{machine.get('cpu_model', '?')}, {machine.get('cores_logical', '?')} cores, "
        f"{machine.get('memory_gib', '?')} GiB, GPU: {machine.get('gpu') or 'none'}, "
        f"Python {machine.get('python', '?')}, load average at start {', '.join(f'{x:.2f}' for x in load)}"
    )


def status(result: CheckResult) -> str:
    if result.skipped:
        return "skipped"
    return "pass" if result.passed else f"FAIL ({len(result.failures)})"


def write(out: Path, results: list[CheckResult], header: dict[str, Any]) -> Path:
    (out / "report.json").write_text(json.dumps({**header, "checks": [asdict(r) for r in results]}, indent=2))
    lines = [
        f"# Reliability report, {header['started']}",
        "",
        f"Mode: {'quick' if header['quick'] else 'full'}. Machine: {machine_line(header['machine'])}. "
        f"Models: `{header['repo']}`. Command: `{header['command']}`. Total {header['seconds']:.0f} s.",
        "",
        "| check | status | what was done | how much | failures | figures | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        failures = "none" if not r.failures else "<br>".join(_cell(f) for f in r.failures[:10])
        if len(r.failures) > 10:
            failures += f"<br>... and {len(r.failures) - 10} more (report.json)"
        if r.skipped:
            failures = f"skipped: {_cell(r.skipped)}"
        lines.append(
            f"| {r.name} | {status(r)} | {_cell(r.what)} | {_cell(r.amount)} | {failures} | "
            f"{_cell(_figures(r.figures))} | {r.seconds:.0f} s |"
        )
    lines += ["", "Every figure and failure message in full: `report.json`; server logs: `logs/`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
