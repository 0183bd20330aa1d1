"""Optional API keys, shared by both fronts: compared in constant time, never logged."""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from serving.errors import Unauthenticated


class ApiKeys:
    def __init__(self, keys: list[SecretStr], header: str) -> None:
        self._keys = tuple(key.get_secret_value().encode("utf-8") for key in keys)
        self.header = header.lower()

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, key: str | None, authorization: str | None = None) -> None:
        """Raise Unauthenticated unless ``key`` (or a ``Bearer`` authorization) is one of the keys."""
        if not self._keys:
            return
        if not key and authorization and authorization[:7].lower() == "bearer ":
            key = authorization[7:].strip()
        given = (key or "").encode("utf-8")
        matched = False
        for expected in self._keys:  # every key is compared, so timing does not reveal which matched
            matched |= hmac.compare_digest(given, expected)
        if not key or not matched:
            raise Unauthenticated("Missing or invalid API key")
