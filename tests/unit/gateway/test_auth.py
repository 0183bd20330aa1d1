from __future__ import annotations

import pytest
from pydantic import SecretStr

from serving.errors import Unauthenticated
from serving.gateway.auth import ApiKeys


def test_keys_header_and_bearer() -> None:
    keys = ApiKeys([SecretStr("alpha"), SecretStr("beta")], "X-API-Key")
    assert keys.header == "x-api-key"
    keys.check("alpha")
    keys.check("beta")
    keys.check(None, "Bearer beta")
    for key, authorization in (
        (None, None),
        ("", None),
        ("alph", None),
        ("alphaa", None),
        (None, "Basic beta"),
    ):
        with pytest.raises(Unauthenticated, match="Missing or invalid API key"):
            keys.check(key, authorization)


def test_no_keys_means_no_auth() -> None:
    keys = ApiKeys([], "x-api-key")
    assert not keys.enabled
    keys.check(None)
