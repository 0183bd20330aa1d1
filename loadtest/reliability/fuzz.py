"""API fuzzing: schemathesis against the gateway's live OpenAPI schema, plus the decoder property tests.

Every operation in ``/openapi.json`` gets the same number of generated cases, in three kinds: positive
cases (schema-valid), positive cases with the path's ``name`` set to the real servable (so bodies reach
the decoders and the model instead of a 404), and negative cases (schema-invalid). Each answer is
checked by schemathesis (documented status, content type and body schema; negative data rejected) and
for any 5xx that the operation does not document as its answer (a documented 501 is an answer, not a
crash). At the end the gateway must still be alive, ``/healthz`` 200, and a real predict must answer.
Then ``tests/unit/test_decoder_properties.py`` and ``tests/unit/v2/test_v2_properties.py`` run in a subprocess
with a fixed example count.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loadtest.procs import ROOT
from loadtest.reliability.common import API_KEY, SERVABLE, CheckResult, Context, timed

# Answers a correct gateway gives to schema-valid bodies that the schema cannot rule out (tensor shapes
# and dtypes depend on the model), so schemathesis' positive_data_acceptance is not used.
CHECK_NAMES = (
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
KINDS = ("positive", "positive-real-name", "negative")


def _checks() -> list[Any]:
    from schemathesis.checks import CHECKS

    return [CHECKS.get_by_names([name])[0] for name in CHECK_NAMES]


def _failure_kinds(error: BaseException) -> list[str]:
    found = getattr(error, "exceptions", None) or [error]
    return [str(getattr(failure, "title", None) or type(failure).__name__) for failure in found]


def _fuzz_operation(operation: Any, cases: int, seed: int, record: dict[str, Any]) -> None:
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    checks = _checks()
    documented = {str(code) for code in operation.definition.raw.get("responses", {})}
    params = {p.name for p in operation.path_parameters} if hasattr(operation, "path_parameters") else set()
    headers = {"x-api-key": API_KEY}
    per_kind = max(1, cases // len(KINDS))
    for kind in KINDS:
        mode = GenerationMode.NEGATIVE if kind == "negative" else GenerationMode.POSITIVE
        overrides = {"path_parameters": {"name": SERVABLE}} if kind == "positive-real-name" and "name" in params else {}
        if kind == "positive-real-name" and not overrides:
            continue  # no name in the path: the plain positive cases cover it
        strategy = operation.as_strategy(generation_mode=mode, **overrides)

        @given(case=strategy)
        @settings(
            max_examples=per_kind,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        @hypothesis.seed(seed)
        def run_one(case: Any) -> None:
            kind = record["kind"]
            record["cases"] += 1
            try:
                response = case.call(headers=headers, timeout=30)
            except Exception as error:  # no answer at all: the server crashed or hung
                record["failures"].append((kind, "no response", f"{case.method} {case.formatted_path}: {error!r}"))
                return
            record["statuses"][response.status_code] += 1
            status = response.status_code
            if status >= 500 and not (status == 501 and "501" in documented):
                record["failures"].append((kind, f"server error {status}", f"{case.method} {case.formatted_path}"))
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except Exception as error:
                for title in _failure_kinds(error):
                    record["failures"].append((kind, title, f"{case.method} {case.formatted_path}"))

        record["kind"] = kind
        try:
            run_one()
        except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            record["unsatisfiable"].append(kind)


def _schema_fuzz(url: str, cases_per_operation: int, result: CheckResult) -> dict[str, Any]:
    from schemathesis import openapi

    schema = openapi.from_url(f"{url}/openapi.json")
    per_operation: dict[str, dict[str, Any]] = {}
    for index, loaded in enumerate(schema.get_all_operations()):
        operation = loaded.ok()  # type: ignore[union-attr]
        record: dict[str, Any] = {"cases": 0, "statuses": Counter(), "failures": [], "unsatisfiable": []}
        per_operation[operation.label] = record
        _fuzz_operation(operation, cases_per_operation, 1000 + index, record)
    return per_operation


def _still_serving(url: str, result: CheckResult) -> None:
    healthz = httpx.get(f"{url}/healthz", timeout=10)
    result.expect(healthz.status_code == 200, f"/healthz after fuzzing answered {healthz.status_code}")
    body = {"instances": np.zeros((2, 28, 28, 1)).tolist()}
    answer = httpx.post(f"{url}/v1/models/{SERVABLE}:predict", json=body, headers={"x-api-key": API_KEY}, timeout=30)
    ok = answer.status_code == 200 and len(answer.json().get("predictions", [])) == 2
    result.expect(ok, f"a real predict after fuzzing answered {answer.status_code}: {answer.text[:200]}")


def _property_tests(examples: int, result: CheckResult, log: Path) -> dict[str, Any]:
    """Run the decoder property tests in a subprocess; the whole pytest output goes to ``log`` (a failure
    message keeps the falsifying example and the error, which hypothesis prints once per failure)."""
    unit = ROOT / "tests" / "unit"
    test_files = [unit / "test_decoder_properties.py", unit / "v2" / "test_v2_properties.py"]
    env = {**os.environ, "DECODER_EXAMPLES": str(examples)}
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *(str(path) for path in test_files),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = run.stdout + run.stderr
    log.write_text(output)
    passed = sum(int(n) for n in re.findall(r"(\d+) passed", output))
    failed = sum(int(n) for n in re.findall(r"(\d+) failed", output))
    if run.returncode != 0:
        lines = output.strip().splitlines()
        keep = [i for i, line in enumerate(lines) if line.startswith(("Falsifying example", "E  ", "FAILED"))]
        detail = "\n".join(lines[i] for i in keep[:40]) or "\n".join(lines[-15:])
        result.fail(f"decoder property tests failed (exit {run.returncode}; whole output: {log}):\n{detail}")
    return {
        "tests": passed + failed,
        "failed": failed,
        "examples_per_test": examples,
        "examples_at_most": (passed + failed) * examples,  # hypothesis stops early when a space is exhausted
        "seconds": round(time.monotonic() - started, 1),
    }


def run(ctx: Context) -> CheckResult:
    result = CheckResult("fuzz", what="schemathesis on every /openapi.json operation; decoder property tests")
    cases_per_operation = 12 if ctx.quick else 120
    examples = 40 if ctx.quick else 400
    with timed(result):
        repo = ctx.model_repo("fuzz")
        modelserver = ctx.start_modelserver(repo)
        gateway = ctx.start_gateway(repo, [modelserver.grpc])
        started = time.monotonic()
        per_operation = _schema_fuzz(gateway.rest, cases_per_operation, result)
        fuzz_seconds = time.monotonic() - started
        result.expect(gateway.managed.alive(), "the gateway process died during fuzzing")
        if gateway.managed.alive():
            _still_serving(gateway.rest, result)
        total = sum(record["cases"] for record in per_operation.values())
        kinds: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        for label, record in per_operation.items():
            statuses.update(record["statuses"])
            for kind, title, where in record["failures"]:
                kinds[title] += 1
                if kinds[title] <= 3:
                    result.fail(f"{label} ({kind}): {title}: {where}")
        for title, count in kinds.items():
            if count > 3:
                result.fail(f"{title}: {count - 3} more")
        untested = [label for label, record in per_operation.items() if record["cases"] == 0]
        result.expect(not untested, f"operations without a case: {untested}")
        result.expect(ctx.quick or total >= 1000, f"only {total} cases; the full run needs at least 1,000")
        properties = _property_tests(examples, result, ctx.logs / "decoder-properties.txt")
        result.amount = (
            f"{total} cases over {len(per_operation)} operations; "
            f"{properties['tests']} decoder properties x {examples} examples"
        )
        result.figures = {
            "cases": total,
            "operations": len(per_operation),
            "cases_per_second": round(total / fuzz_seconds, 1) if fuzz_seconds else None,
            "fuzz_seconds": round(fuzz_seconds, 1),
            "failures_by_kind": dict(kinds),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "cases_per_operation": {label: record["cases"] for label, record in per_operation.items()},
            "decoder_properties": properties,
        }
    return result
