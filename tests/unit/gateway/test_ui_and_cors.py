"""The gateway's pages (docs, playground) and its CORS setting, through the ASGI app (no upstream needed)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.gateway.config import ConfigError, load_settings
from serving.gateway.main import create_app

PAGE_ORIGIN = "http://pages.example:8080"


def _client(**overrides: Any) -> TestClient:
    settings = load_settings(repo=None, servables={"cnn": "default"}, api_keys=["k"], **overrides)
    return TestClient(create_app(settings))  # no lifespan: nothing here reaches an upstream


def test_docs_pages_load_only_from_the_gateway() -> None:
    client = _client()
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(path)
        assert page.status_code == 200
        assert f'src="/assets/docs/{asset}"' in page.text
        assert re.findall(r'(?:src|href)="(https?:[^"]+)"', page.text) == []
        assert "img-src 'self' data:" in page.headers["content-security-policy"]
        script = client.get(f"/assets/docs/{asset}")
        assert script.status_code == 200 and len(script.content) > 500_000
    assert client.get("/assets/docs/swagger-ui.css").headers["content-type"].startswith("text/css")


def test_playground_is_static_and_needs_no_key() -> None:
    client = _client()
    moved = client.get("/playground", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (308, "/playground/")
    page = client.get("/playground/")
    assert page.status_code == 200 and "<title>tensorgate playground</title>" in page.text
    assert re.findall(r'(?:src|href)="(https?:[^"]+)"', page.text) == []
    for asset in ("playground.js", "playground.css"):
        assert client.get(f"/playground/{asset}").status_code == 200
    assert "connect-src *" in page.headers["content-security-policy"]
    assert client.get("/v1/models").status_code == 401  # the API behind it still wants the key


def test_cors_is_off_by_default() -> None:
    client = _client()
    answer = client.get("/healthz", headers={"origin": PAGE_ORIGIN})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    preflight = client.options("/v1/models", headers={"origin": PAGE_ORIGIN, "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_the_configured_origins_only() -> None:
    client = _client(cors={"allow_origins": [PAGE_ORIGIN]})
    preflight = client.options(
        "/v1/classify/cnn",
        headers={
            "origin": PAGE_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-api-key, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    answer = client.get("/healthz", headers={"origin": PAGE_ORIGIN})
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "x-model-version" in answer.headers["access-control-expose-headers"].lower()
    refused = client.options(
        "/v1/models", headers={"origin": "http://elsewhere.example", "access-control-request-method": "GET"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("origin", ["http://pages.example/app", "pages.example", "ftp://x"])
def test_an_origin_with_a_path_or_no_scheme_stops_the_start(origin: str) -> None:
    with pytest.raises(ConfigError, match=r"cors.allow_origins"):
        load_settings(repo=None, cors={"allow_origins": [origin]})
