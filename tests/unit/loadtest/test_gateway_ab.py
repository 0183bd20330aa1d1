"""loadtest.gateway_ab's design (every configuration once per repeat) and loadtest.abstats' summaries."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from loadtest import abstats, gateway_ab
from serving.gateway.config import Settings

FACTORS: dict[str, list[Any]] = {"event_loop": ["uvloop", "asyncio"], "gc_freeze": [True, False]}


def _rows(cpu: dict[tuple[str, bool], list[float]]) -> list[dict[str, Any]]:
    rows = []
    for (loop, freeze), values in cpu.items():
        for repeat, value in enumerate(values):
            row = {"repeat": repeat, "protocol": "rest", "event_loop": loop, "gc_freeze": freeze}
            rows.append({**row, "us_per_request": value, "requests_per_s": 1e6 / value, "other_processes_cores": 0.01})
    return rows


def test_every_configuration_runs_once_per_repeat_in_a_seeded_order() -> None:
    configs = gateway_ab.configurations(gateway_ab.DEFAULT_FACTORS)
    assert len(configs) == 8 and len({tuple(c.items()) for c in configs}) == 8
    plan = gateway_ab.schedule(configs, 4, seed=1)
    assert len(plan) == 4
    for order in plan:
        assert sorted(map(str, order)) == sorted(map(str, configs))
    assert plan == gateway_ab.schedule(configs, 4, seed=1)
    assert len({tuple(map(str, order)) for order in plan}) > 1  # shuffled anew per repeat


def test_each_configuration_is_a_valid_gateway_server_section() -> None:
    for config in gateway_ab.configurations(gateway_ab.DEFAULT_FACTORS):
        gateway = gateway_ab.gateway_config(8000, 8001, "127.0.0.1:8500", 1, config)
        parsed = Settings.model_validate({**gateway, "repo": None})
        assert parsed.server.model_dump(include=set(config)) == config


def test_factor_arguments() -> None:
    assert gateway_ab._factor("gc_freeze=true,false") == ("gc_freeze", [True, False])
    assert gateway_ab._factor("gc_threshold=[700, 7000]") == ("gc_threshold", [700, 7000])
    key, levels = gateway_ab._factor('options=[{}, {"grpc.enable_channelz": 0, "grpc.http2.bdp_probe": 0}]')
    assert (key, levels) == ("options", [{}, {"grpc.enable_channelz": 0, "grpc.http2.bdp_probe": 0}])
    for text in ("gc_freeze", "gc_freeze=true", "=a,b", "gc_freeze=[true]"):
        with pytest.raises(argparse.ArgumentTypeError, match="KEY=A,B"):
            gateway_ab._factor(text)


def test_summary_gives_median_and_range_cheapest_first() -> None:
    rows = _rows({("uvloop", True): [250, 240, 260], ("asyncio", True): [200, 230, 210]})
    summary = abstats.summarize(rows, ["event_loop", "gc_freeze"], "rest")
    assert [entry["config"]["event_loop"] for entry in summary] == ["asyncio", "uvloop"]
    assert summary[0]["us_per_request"] == {"median": 210, "min": 200, "max": 230} and summary[0]["n"] == 3
    assert abstats.summarize(rows, ["event_loop", "gc_freeze"], "grpc") == []


def test_effects_pair_within_a_repeat_and_only_the_factor_differs() -> None:
    cpu = {
        ("uvloop", True): [200, 300, 250, 220, 240, 260],
        ("uvloop", False): [180, 270, 225, 198, 216, 234],  # 10% cheaper than its pair every time
        ("asyncio", True): [201, 301, 251, 221, 239, 259],  # same as uvloop, give or take 1
        ("asyncio", False): [181, 271, 224, 199, 217, 233],
    }
    found = {effect["factor"]: effect for effect in abstats.effects(_rows(cpu), FACTORS, "rest")}
    freeze, loop = found["gc_freeze"], found["event_loop"]
    assert (freeze["baseline"], freeze["level"], freeze["pairs"], freeze["cheaper_pairs"]) == (True, False, 12, 12)
    assert freeze["cpu_ratio"]["median"] == 0.9 and freeze["verdict"] == "10% less CPU"
    assert freeze["rate_ratio"]["median"] == pytest.approx(1.111, abs=0.001)
    assert loop["pairs"] == 12 and loop["verdict"] == "within noise"


def test_tied_pairs_are_left_out_of_the_sign_test() -> None:
    cpu = {("uvloop", True): [200, 200, 200, 200, 200, 200], ("uvloop", False): [180, 180, 180, 180, 180, 200]}
    (freeze,) = [e for e in abstats.effects(_rows(cpu), FACTORS, "rest") if e["factor"] == "gc_freeze"]
    assert (freeze["cheaper_pairs"], freeze["dearer_pairs"], freeze["tied_pairs"]) == (5, 0, 1)
    assert freeze["sign_test_p"] == round(abstats.sign_test_p(5, 5), 4) == 0.0625


def test_dict_levels_are_paired_and_printed_as_json() -> None:
    tuned = {"grpc.enable_channelz": 0}
    rows = []
    for repeat, (plain, lean) in enumerate([(900, 850), (950, 880), (920, 860)]):
        for value, cpu in (({}, plain), (tuned, lean)):
            row = {"repeat": repeat, "protocol": "grpc", "grpc_arguments": value, "us_per_request": cpu}
            rows.append({**row, "requests_per_s": 1e6 / cpu, "other_processes_cores": 0.0})
    factors: dict[str, list[Any]] = {"grpc_arguments": [{}, tuned]}
    (effect,) = abstats.effects(rows, factors, "grpc")
    assert effect["pairs"] == 3 and effect["cheaper_pairs"] == 3 and effect["cpu_ratio"]["max"] < 1
    summary = abstats.summarize(rows, ["grpc_arguments"], "grpc")
    assert summary[0]["config"] == {"grpc_arguments": tuned} and summary[0]["us_per_request"]["median"] == 860
    assert abstats._config_text(summary[0]["config"]) == 'grpc_arguments={"grpc.enable_channelz": 0}'


def test_sign_test() -> None:
    assert abstats.sign_test_p(0, 0) == 1.0
    assert abstats.sign_test_p(6, 6) == pytest.approx(2 / 64)
    assert abstats.sign_test_p(3, 6) == 1.0
    assert abstats.sign_test_p(1, 6) == pytest.approx(2 * 7 / 64)
    assert abstats.verdict(0.8, 0.2) == "within noise"
    assert abstats.verdict(0.975, 0.001) == "2.5% less CPU: consistent but under 3%"
    assert abstats.verdict(1.05, 0.01) == "5% more CPU"


def test_markdown_names_the_machine_and_every_configuration() -> None:
    cpu = {("uvloop", True): [250, 240], ("asyncio", True): [200, 230], ("uvloop", False): [1, 2]}
    rows = _rows(cpu)
    result = {
        "command": "python -m loadtest.gateway_ab --repeats 2",
        "seconds": 12.0,
        "machine": {"cpu_model": "Test CPU", "cores_logical": 2, "python": "3.11.7", "load_average_start": [0.1]},
        "load_average_end": [0.2],
        "connections": 32,
        "requests": {"rest": 5000, "grpc": 3000},
        "summary": {"rest": abstats.summarize(rows, list(FACTORS), "rest")},
        "effects": {"rest": abstats.effects(rows, FACTORS, "rest")},
    }
    text = abstats.markdown(result)
    assert "Test CPU, 2 logical cores" in text
    assert "| event_loop=asyncio, gc_freeze=true | 2 | 215.0 | 200.0-230.0 |" in text
    assert "| gc_freeze | false vs true | 2 |" in text
