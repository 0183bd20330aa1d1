"""``python -m loadtest`` end to end: the quick run writes every file and its numbers parse back; a
target that cannot start is reported and the run goes on; Ctrl-C leaves no process behind."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest import report
from loadtest.procs import ROOT, RUN_ENV
from loadtest.targets import ALL_NAMES, TARGETS

pytestmark = pytest.mark.slow


def loadtest(out: Path, repo: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "loadtest", "--repo", str(repo), "--out", str(out), *options]


def processes_of(run: Path) -> list[psutil.Process]:
    """Processes the run started (each carries the run's directory in its environment)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(RUN_ENV) == str(run):
                found.append(process)
        except psutil.Error:
            continue
    return found


def only_run(out: Path) -> Path:
    runs = list(out.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_quick_run_writes_every_file_and_the_numbers_parse_back(quick_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(loadtest(out, quick_repo, "--quick"), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[ 1/" in done.stdout and "min of load left" in done.stdout  # progress lines
    run = only_run(out)
    results = report.load(run)
    assert {"report.json", "report.md", "latency_vs_throughput.png", "peak_throughput.png"} <= {
        p.name for p in run.iterdir()
    }
    assert results["valid"] is False and results["validity_note"] == "quick run (seconds per step)"
    assert set(results["targets"]) == set(TARGETS)
    for name, entry in results["targets"].items():
        if name == "gateway-rest-int8" and entry["status"] == "skipped":
            # the int8 variant comes from python -m export (built in parallel); its failure is reported
            assert "cnn_int8" in entry["reason"]
            continue
        assert entry["status"] == "ok", (name, entry["reason"])
        for step in entry["steps"]:
            prefix = run / "locust" / f"{name}-u{step['users']}"
            assert Path(f"{prefix}.html").is_file() and Path(f"{prefix}_stats.csv").is_file()
            assert step["requests"] > 0 and step["failures"] == 0, (name, step.get("failure_messages"))
            assert step["locust_cpu_s"] > 0 and all(v > 0 for v in step["server_peak_rss_mib"].values())
            rows = list(csv.DictReader(Path(f"{prefix}_stats.csv").read_text().splitlines()))
            assert rows[-1]["Name"] == "Aggregated"
    assert results["targets"]["gateway-rest"]["at_70pct"]["target_rps"] > 0
    assert results["ceiling"]["images_per_s"] > 0
    cpu = {(run["protocol"], run["connections"]): run["us_per_request"] for run in results["gateway_cpu"]["runs"]}
    assert set(cpu) == {("rest", 1), ("rest", 32), ("grpc", 1), ("grpc", 32)} and all(v > 0 for v in cpu.values())
    # each figure is the median over three fresh gateway processes, one round each
    assert all(len(run["us_per_request_processes"]) == 3 for run in results["gateway_cpu"]["runs"])
    assert [goal["id"] for goal in results["goals"]][:2] == ["gateway_vs_handmade", "gateway_vs_naive"]
    handmade = results["goals"][0]
    assert handmade["value"] == pytest.approx(
        max(s["requests_per_s"] for s in results["targets"]["gateway-rest"]["steps"])
        / max(s["requests_per_s"] for s in results["targets"]["handmade"]["steps"])
    )
    text = (run / "report.md").read_text()
    step = results["targets"]["handmade"]["steps"][0]
    assert f"| {step['users']} | {step['requests_per_s']:,.1f} | {step['images_per_s']:,.0f} |" in text
    assert "not evidence" in text and results["machine"]["cpu_model"] in text
    assert not processes_of(run), "a process started by the run is still alive"


def test_a_target_that_cannot_start_is_reported_and_the_run_goes_on(quick_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(quick_repo / "cnn", repo / "cnn")
    for version in (repo / "cnn").iterdir():
        (version / "assets.extra" / "keras_model.keras").write_bytes(b"not a keras file")
    out = tmp_path / "results"
    command = loadtest(out, repo, "--quick", "--targets", "naive,handmade")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = report.load(only_run(out))
    naive = results["targets"]["naive"]
    assert naive["status"] == "not started"
    assert "naive exited with status" in naive["reason"] and "Traceback" in naive["reason"]  # the log tail
    assert results["targets"]["handmade"]["status"] == "ok"
    assert "naive exited with status" in (only_run(out) / "report.md").read_text()


def test_distributed_locust_reports_cpu_per_process(quick_repo: Path, tmp_path: Path) -> None:
    """--workers 2: a master and two worker processes; the step's numbers are the workers' requests,
    exact (merged on the master), and Locust's CPU is reported for each process."""
    out = tmp_path / "results"
    command = loadtest(out, quick_repo, "--quick", "--targets", "naive", "--workers", "2")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = only_run(out)
    results = report.load(run)
    assert results["settings"]["locust_workers"] == 2
    step = results["targets"]["naive"]["steps"][0]
    assert step["locust_workers"] == 2 and step["requests"] > 0 and step["failures"] == 0
    assert set(step["locust_cpu_by_process"]) == {"master", "worker-1", "worker-2"}
    assert all(seconds > 0 for seconds in step["locust_cpu_by_process"].values()), step["locust_cpu_by_process"]
    assert step["locust_cpu_s"] == pytest.approx(sum(step["locust_cpu_by_process"].values()))
    assert step["p50_ms"] is not None and step["window_start"] is not None  # the workers' exact samples
    assert step["requests"] >= step["locust"]["requests"] > 0  # Locust's CSV may miss the last second
    for index in (1, 2):
        assert (run / "locust" / f"naive-u{step['users']}-worker-{index}.log").is_file()
    text = (run / "report.md").read_text()
    assert "Locust distributed: 1 master + 2 workers" in text and "(master " in text and "worker-2 " in text


def test_ctrl_c_stops_every_process_it_started(quick_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = loadtest(out, quick_repo, "--targets", "handmade", "--users", "2", "--duration", "60s")
    runner = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    deadline = time.monotonic() + 300
    for line in runner.stdout:
        if line.startswith("[ 1/"):
            break
        assert time.monotonic() < deadline
    time.sleep(3)  # Locust and the server are both running now
    run = only_run(out)
    assert len(processes_of(run)) >= 2
    runner.send_signal(signal.SIGINT)
    assert runner.wait(60) == 130
    assert not processes_of(run)
    results = report.load(run)
    assert results["interrupted"] is True
    assert "handmade" in results["targets"]


def test_every_target_is_known_to_the_command_line() -> None:
    assert set(TARGETS) < set(ALL_NAMES)


def test_added_p50_is_judged_on_interleaved_one_caller_rounds(quick_repo: Path, tmp_path: Path) -> None:
    """With a 1-user step of the model server and a gateway front, the run also times one plain caller
    in interleaved rounds, and the added-p50 goals take their figure from there."""
    out = tmp_path / "results"
    targets = "modelserver-grpc,gateway-rest,gateway-grpc"
    command = loadtest(out, quick_repo, "--quick", "--users", "1", "--targets", targets)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "one caller, no Locust: 2 interleaved rounds of 200 requests per target" in done.stdout
    run = only_run(out)
    results = report.load(run)
    measured = results["one_caller"]
    assert set(measured["targets"]) == {"modelserver-grpc", "gateway-rest", "gateway-grpc"}
    assert all(row["requests"] == 400 and row["p50_ms"] > 0 for row in measured["targets"].values())
    goals = {goal["id"]: goal for goal in results["goals"]}
    for name in ("gateway-rest", "gateway-grpc"):
        added = measured["added_p50"][name]
        assert len(added["round_ms"]) == 2
        assert goals[f"{name}_added_p50"]["value"] == pytest.approx(added["median_ms"])
        assert goals[f"{name}_added_p50"]["detail"].startswith("one caller, median of 2 interleaved rounds of 200")
        assert "Locust's 1-user steps: p50 " in goals[f"{name}_added_p50"]["detail"]
    assert "One caller, no Locust" in (run / "report.md").read_text()
