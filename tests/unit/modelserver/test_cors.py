"""``--rest_api_enable_cors_support``: parsed like TF Serving's flag, and what the wrapper answers."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.modelserver import flags
from serving.modelserver.cors import Cors


def test_the_flag_is_honoured_not_ignored() -> None:
    parsed = flags.parse(["--model_base_path=/m", "--rest_api_enable_cors_support=true"]).flags
    assert parsed.rest_api_enable_cors_support is True
    assert parsed.ignored == []
    assert flags.parse(["--model_base_path=/m"]).flags.rest_api_enable_cors_support is False


def _call(app: Any, method: str) -> tuple[list[dict[str, Any]], list[str]]:
    sent: list[dict[str, Any]] = []
    reached: list[str] = []

    async def api(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["method"])
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error": "x"}'})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/v1/models/cnn:predict", "headers": []}
    asyncio.run(app(api)(scope, receive, send))
    return sent, reached


def test_answers_allow_any_origin_and_preflights_never_reach_the_api() -> None:
    sent, reached = _call(Cors, "POST")
    assert reached == ["POST"]
    assert sent[0]["status"] == 404
    assert (b"access-control-allow-origin", b"*") in sent[0]["headers"]
    sent, reached = _call(Cors, "OPTIONS")
    assert reached == []
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 200
    assert headers[b"access-control-allow-origin"] == b"*"
    assert b"POST" in headers[b"access-control-allow-methods"]
    assert headers[b"access-control-allow-headers"] == b"Content-Type"
