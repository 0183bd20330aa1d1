"""Schemathesis against the gateway's v2 REST routes, from the protocol's published OpenAPI description
(MLServer's ``dataplane.json``, see tests/fixtures/open_inference/NOTICE.md), not from our own schema.

For every operation it describes: schema-valid cases, valid cases aimed at a real model, and
schema-invalid cases. No answer may be a 5xx, every answer must match the description's status codes,
content types and body schemas, and invalid requests must be refused. The one exception: the readiness
routes document only 200, while the protocol says a 4xx answer means "not ready"; there 400 and 404
(unknown model) are accepted.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings

from tests.integration.gateway.conftest import FakeUpstream, Gateway

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "open_inference" / "dataplane.json"
KEY = "schema-key"
CASES = 20  # per operation and kind
READY = ("/v2/models/{model_name}/ready", "/v2/models/{model_name}/versions/{model_version}/ready")
CHECKS = ("content_type_conformance", "response_schema_conformance", "negative_data_rejection")


def published_schema() -> dict[str, Any]:
    """dataplane.json with its two non-OpenAPI constructs made valid (see the fixture's NOTICE.md)."""
    schema = json.loads(SPEC.read_text())
    schema = copy.deepcopy(schema)
    enums = schema["components"].pop("enums")
    schema["components"]["schemas"].update(enums)
    text = json.dumps(schema).replace("#/components/enums/", "#/components/schemas/")
    schema = json.loads(text)
    schema["components"]["schemas"]["TensorData"] = {"title": "TensorData", "type": "array"}  # JSON has no bytes
    return schema


@pytest.fixture(scope="module")
def gateway(tmp_module: Path) -> Iterator[Gateway]:
    upstream = FakeUpstream(tmp_module, "cnn")
    config = {
        "repo": None,
        "upstreams": {"default": {"targets": [upstream.target]}},
        "servables": {"cnn": "default"},
        "api_keys": [KEY],
    }
    server = Gateway(tmp_module, config)
    server.wait_ready()
    yield server
    server.stop()
    upstream.stop()


def _check_functions(path: str) -> list[Any]:
    from schemathesis.checks import CHECKS as REGISTRY

    names = CHECKS if path in READY else (*CHECKS, "status_code_conformance")
    return [REGISTRY.get_by_names([name])[0] for name in names]


def _run(
    strategy: Any, seed: int, url: str, checks: list[Any], path: str, statuses: Counter[int], failures: list[str]
) -> None:
    headers = {"x-api-key": KEY}

    @given(case=strategy)
    @settings(
        max_examples=CASES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.seed(seed)
    def run(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        where = f"{case.method} {case.formatted_path}"
        if response.status_code >= 500:
            failures.append(f"{where}: {response.status_code} {response.text[:200]}")
        if path in READY and response.status_code not in (200, 400, 404):
            failures.append(f"{where}: readiness answered {response.status_code}")
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except Exception as error:
            for failure in getattr(error, "exceptions", None) or [error]:
                title = getattr(failure, "title", None) or type(failure).__name__
                failures.append(f"{where}: {title}: {str(failure)[:300]}")

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # nothing to make schema-invalid here
        run()


def test_the_published_description_holds_for_every_v2_route(gateway: Gateway) -> None:
    from schemathesis import GenerationMode, openapi

    schema = openapi.from_dict(published_schema())
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for index, loaded in enumerate(schema.get_all_operations()):
        operation = loaded.ok()
        operations += 1
        path = operation.path
        checks = _check_functions(path)
        names = {p.name for p in operation.path_parameters}
        kinds: list[tuple[GenerationMode, dict[str, Any]]] = [(GenerationMode.POSITIVE, {})]
        if "model_name" in names:
            real = {"model_name": "cnn", **({"model_version": "1"} if "model_version" in names else {})}
            kinds.append((GenerationMode.POSITIVE, {"path_parameters": real}))
        kinds.append((GenerationMode.NEGATIVE, {}))
        for kind, (mode, overrides) in enumerate(kinds):
            strategy = operation.as_strategy(generation_mode=mode, **overrides)

            _run(strategy, 100 * index + kind, gateway.url, checks, path, statuses, failures)
    assert operations == 15  # infer_stream, generate and generate_stream too: answered 404, as documented
    assert not failures, "\n".join(failures[:30])
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[404] > 0, statuses
    assert gateway.client.get("/healthz").status_code == 200
