"""On-behalf-of pre-screening: unusable caller tokens are refused before any network call."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from shared.credentials.tokens import AppTokenProvider
from shared.credentials.user import OnBehalfOfProvider
from shared.errors import CallerTokenError

NOW = datetime(2026, 11, 1, tzinfo=UTC)
CLIENT = "00000000-0000-0000-0000-0000000000aa"


class NoCredential:
    """A credential source that must never be reached by these tests."""

    kind = "secret"

    def current(self) -> tuple[str, Any]:
        raise AssertionError("the credential was read: the caller token was not pre-screened")

    def invalidate(self) -> None:
        pass

    def describe(self) -> Any:
        raise AssertionError("unused")


def _token(**claims: Any) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def _provider() -> OnBehalfOfProvider:
    apps = AppTokenProvider(
        client_id=CLIENT,
        authority_url="https://login.microsoftonline.com",
        http_client=requests.Session(),
        credential=NoCredential(),  # type: ignore[arg-type]
    )
    return OnBehalfOfProvider(apps, audiences=(CLIENT, f"api://{CLIENT}"), clock=lambda: NOW)


GOOD = {"aud": f"api://{CLIENT}", "tid": "t", "oid": "o", "exp": int(NOW.timestamp()) + 3600}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-jwt", "not usable"),
        (_token(**{**GOOD, "aud": "https://graph.microsoft.com"}), "not this app"),
        (_token(**{**GOOD, "exp": int(NOW.timestamp()) - 1}), "expired"),
        (_token(**{**GOOD, "exp": int(NOW.timestamp()) + 30}), "expired"),
        (_token(**{k: v for k, v in GOOD.items() if k != "oid"}), "not a user token"),
    ],
)
def test_unusable_caller_tokens_are_401_errors(token: str, message: str) -> None:
    """Malformed, foreign-audience, expired and app-only tokens raise CallerTokenError."""
    with pytest.raises(CallerTokenError, match=message) as info:
        _provider().token(token, "https://graph.microsoft.com/.default")
    assert token not in str(info.value)
    assert info.value.code == "invalid_caller_token"
