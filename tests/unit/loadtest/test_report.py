from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from loadtest import markdown, report
from loadtest.__main__ import duration, target_names, user_steps


def _step(users: int, rate: float, p50: float, p99: float, batch: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "users": users,
        "requests": int(rate * 10),
        "failures": 0,
        "requests_per_s": rate,
        "images_per_s": rate * batch,
        "p50_ms": p50,
        "p95_ms": p99,
        "p99_ms": p99,
        "max_ms": p99,
        "locust": {"p50_ms": round(p50), "p99_ms": round(p99)},
        "wrong_pct": 10.0,
        "server_cpu_s": {"gateway": 5.0},
        "server_peak_rss_mib": {"gateway": 80.0},
        "locust_cpu_s": 4.0,
        "other_cpu_s": 0.1,
        **extra,
    }


def _target(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    base = {"server": "x", "protocol": "rest", "servable": "cnn", "payload": "instances", "batch": 1}
    return {**base, "group": "gateway", "status": "ok", "reason": "", "steps": steps, **extra}


def results(quick: bool = False) -> dict[str, Any]:
    gateway = _target(
        [_step(1, 300, 3.0, 5.0), _step(16, 3000, 5.0, 9.0)],
        at_70pct={**_step(16, 2100, 4.0, 20.0), "target_rps": 2100.0, "peak_requests_per_s": 3000.0},
    )
    return {
        "machine": {
            "cpu_model": "test CPU",
            "cores_logical": 2,
            "cores_physical": 2,
            "memory_gib": 8,
            "os": "Linux",
            "python": "3.11",
            "gpu": "none",
            "load_average_start": [0.2, 0.2, 0.2],
            "versions": {"locust": "2"},
        },
        "settings": {"duration_s": 10.0, "users": [1, 16], "quick": quick, "modelserver_batching": True},
        "started": "now",
        "targets": {
            "naive": _target([_step(16, 30, 450.0, 900.0)]),
            "handmade": _target([_step(1, 400, 2.0, 3.0), _step(16, 2500, 6.0, 10.0)]),
            "peer": _target([_step(1, 100, 9.0, 12.0), _step(16, 760, 21.0, 40.0)]),
            "modelserver-grpc": _target([_step(1, 320, 2.5, 4.0)]),
            "gateway-rest": gateway,
            "gateway-grpc": _target([_step(1, 350, 3.2, 5.0), _step(16, 2000, 7.0, 12.0)]),
            "gateway-grpc-batch64": _target([_step(2, 20, 90.0, 120.0, batch=64)], batch=64),
            "gateway-rest-int8": {**_target([]), "status": "skipped", "reason": "no cnn_int8"},
        },
        "ceiling": {"images_per_s": 2000.0},
        "gateway_cpu": {
            "runs": [
                {
                    "protocol": "rest",
                    "connections": 1,
                    "us_per_request": 700.0,
                    "us_per_request_rounds": [700.0],
                    "requests_per_s": 900.0,
                },
                {
                    "protocol": "rest",
                    "connections": 32,
                    "us_per_request": 380.0,
                    "us_per_request_rounds": [380.0],
                    "requests_per_s": 2400.0,
                },
            ]
        },
    }


def test_goals_are_ratios_judged_met_or_missed() -> None:
    goals = {goal["id"]: goal for goal in report.goals(results())}
    assert goals["gateway_vs_handmade"]["value"] == pytest.approx(3000 / 2500) and goals["gateway_vs_handmade"]["met"]
    assert goals["gateway_vs_naive"]["value"] == pytest.approx(100.0) and goals["gateway_vs_naive"]["met"]
    # every common step counts: 300/100 = 3.0 at 1 user, 3000/760 at 16
    assert goals["gateway-rest_vs_peer"]["value"] == pytest.approx(3.0) and goals["gateway-rest_vs_peer"]["met"]
    assert goals["gateway-grpc_vs_peer"]["value"] == pytest.approx(2000 / 760)
    assert goals["gateway-grpc_vs_peer"]["met"] is False
    assert goals["gateway-grpc_added_p50"]["value"] == pytest.approx(0.7) and goals["gateway-grpc_added_p50"]["met"]
    assert goals["gateway-rest_added_p50"]["value"] == pytest.approx(0.5)
    assert goals["tail_at_70pct"]["value"] == pytest.approx(5.0) and goals["tail_at_70pct"]["met"] is False
    assert goals["batch_vs_ceiling"]["value"] == pytest.approx(20 * 64 / 2000) and goals["batch_vs_ceiling"]["met"]
    cpu = goals["gateway_cpu_per_request"]
    assert cpu["value"] == 380.0 and cpu["met"] and "rest x1 connections 700 us" in cpu["detail"]


def test_missing_measurements_are_not_judged() -> None:
    partial = results()
    del partial["targets"]["handmade"]
    partial["targets"]["peer"]["status"] = "not started"
    goals = {goal["id"]: goal for goal in report.goals(partial)}
    assert goals["gateway_vs_handmade"]["met"] is None
    assert goals["gateway-rest_vs_peer"]["met"] is None
    del partial["gateway_cpu"]
    assert report.goals(partial)[-1]["met"] is None
    assert markdown.verdict(goals["gateway_vs_handmade"], "") == "not measured"


def test_validity_refuses_quick_and_busy_runs() -> None:
    assert report.validity(results()) == ""
    assert report.validity(results(quick=True)) == "quick run (seconds per step)"
    busy = results()
    busy["targets"]["handmade"]["steps"][0]["other_cpu_s"] = 5.0  # 25% of 2 cores over 10 s
    assert "machine busy" in report.validity(busy)
    goal = {"met": True}
    assert markdown.verdict(goal, "") == "met"
    assert markdown.verdict(goal, "machine busy") == "met (not evidence: machine busy)"
    assert markdown.verdict({"met": False}, "") == "**missed**"


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    report.write(results(), tmp_path)
    loaded = report.load(tmp_path)
    assert loaded["valid"] is True
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", "report.md", *loaded["plots"]}
    text = (tmp_path / "report.md").read_text()
    assert "| 16 | 2,500.0 | 2,500 | 6.00 |" in text  # handmade's second step
    assert "gateway-rest at 70% of peak: p99 <= 4x p50 | 5.00 | 4 | **missed** |" in text
    assert "Status: skipped." in text
    assert "| rest | 32 | 380 | 380 | 380 | 2,400 |" in text  # a report from one process: its figure is the median
    assert "model server batching on;" in text


def test_report_names_the_model_servers_extra_flags(tmp_path: Path) -> None:
    flagged = results()
    flagged["settings"]["modelserver_flags"] = ["--tensorflow_intra_op_parallelism=2"]
    report.write(flagged, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "model server batching on (flags --tensorflow_intra_op_parallelism=2);" in text


def test_command_line_values() -> None:
    assert duration("30s") == 30.0 and duration("2m") == 120.0 and duration("45") == 45.0
    assert user_steps("8,1,32") == [1, 8, 32]
    assert target_names("naive,peer") == ["naive", "peer"]
    assert "inprocess-batch64" in target_names("all")
    for parse, text in ((duration, "soon"), (user_steps, "1,x"), (user_steps, "0"), (target_names, "nope")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_profiled_step_reports_py_spys_cpu_apart(tmp_path: Path) -> None:
    profiled = results()
    entry = profiled["targets"]["handmade"]
    entry["steps"][0]["profiler_cpu_s"] = {"gateway": 1.2}
    entry["profile"] = {"users": entry["steps"][0]["users"], "gateway": "top functions ..."}
    report.write(profiled, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "py-spy's own CPU in that step (not counted as 'other'): gateway 1.2 s." in text


def test_added_p50_comes_from_one_caller_rounds_when_the_run_has_them() -> None:
    measured = results()
    row = {"p99_ms": 6.0, "requests": 800}
    measured["one_caller"] = {
        "requests": 400,
        "rounds": 2,
        "targets": {
            "modelserver-grpc": {**row, "p50_ms": 2.0, "round_p50_ms": [2.0, 2.1]},
            "gateway-rest": {**row, "p50_ms": 3.4, "round_p50_ms": [3.3, 3.5]},
        },
        "added_p50": {"gateway-rest": {"median_ms": 1.3, "round_ms": [1.3, 1.4]}},
    }
    goals = {goal["id"]: goal for goal in report.goals(measured)}
    rest = goals["gateway-rest_added_p50"]
    assert rest["value"] == pytest.approx(1.3) and rest["met"] is False  # Locust's steps alone said +0.5: met
    assert rest["detail"] == (
        "one caller, median of 2 interleaved rounds of 400: p50 3.40 ms vs 2.00 ms, added per round +1.30, +1.40 ms; "
        "Locust's 1-user steps: p50 3.00 ms vs 2.50 ms"
    )
    # a front without one-caller rounds keeps the Locust figure
    assert goals["gateway-grpc_added_p50"]["value"] == pytest.approx(0.7)
    text = markdown.render({**measured, "goals": list(goals.values())})
    assert "| gateway-rest | 3.40 | 6.00 | 3.30, 3.50 | +1.30, +1.40 |" in text
    assert "| modelserver-grpc | 2.00 | 6.00 | 2.00, 2.10 | - |" in text
    failed = markdown.render({**measured, "one_caller": {"error": "POST x: HTTP 503"}, "goals": []})
    assert "One caller, no Locust: POST x: HTTP 503." in failed
