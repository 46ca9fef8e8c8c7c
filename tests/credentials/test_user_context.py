"""User context end to end: on-behalf-of for an HTTP caller, and device-code sign-in for the CLI.

Real msal against the emulator's Entra ID; caller tokens are minted by the emulator's admin API
as a front-end app would obtain them.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import jwt
import pytest

from shared.core.errors import CallerTokenError, ConsentError
from tests.conftest import LocalCloud
from tests.credentials.conftest import admin, run_cli, wire

GRAPH = "https://graph.microsoft.com/.default"


def _caller(cloud: LocalCloud, user: str, **kwargs: object) -> str:
    body = {"user": user, **kwargs}
    return str(admin(cloud.emulator, "POST", "users/token", body)["access_token"])


def _forged(token: str) -> str:
    """Same claims, no signature: what an attacker who knows a user's oid/tid can make."""
    claims = jwt.decode(token, options={"verify_signature": False})

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.e2e
def test_obo_acts_as_the_caller_and_caches_per_user(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """A valid caller gets a delegated token; repeat calls (even with a new caller token) hit
    MSAL's cache: one exchange per user."""
    svc = wire(app_env)
    obo = svc.on_behalf_of()
    before = cloud.token_count("on_behalf_of")

    first = obo.token(_caller(cloud, "analyst"), GRAPH)
    again = obo.token(_caller(cloud, "analyst"), GRAPH)

    claims = jwt.decode(first, options={"verify_signature": False})
    assert "scp" in claims and "roles" not in claims
    assert claims["upn"].startswith("analyst@")
    assert again == first
    assert cloud.token_count("on_behalf_of") - before == 1
    other = jwt.decode(
        obo.token(_caller(cloud, "reader"), GRAPH), options={"verify_signature": False}
    )
    assert other["oid"] != claims["oid"]
    assert cloud.token_count("on_behalf_of") - before == 2


@pytest.mark.e2e
def test_forged_caller_token_never_gets_a_cached_user_token(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """After the analyst's real exchange, an unsigned token naming the analyst is refused."""
    obo = wire(app_env).on_behalf_of()
    genuine = _caller(cloud, "analyst")
    obo.token(genuine, GRAPH)

    with pytest.raises(CallerTokenError, match="not signed the way Entra"):
        obo.token(_forged(genuine), GRAPH)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expired": True}, "expired"),
        ({"audience": "https://graph.microsoft.com"}, "not this app"),
    ],
)
def test_expired_or_foreign_caller_token_is_a_401_error(
    cloud: LocalCloud, app_env: dict[str, str], kwargs: dict[str, object], message: str
) -> None:
    """Expired and foreign-audience caller tokens are refused before any exchange."""
    obo = wire(app_env).on_behalf_of()
    before = cloud.token_count("on_behalf_of")
    with pytest.raises(CallerTokenError, match=message):
        obo.token(_caller(cloud, "analyst", **kwargs), GRAPH)
    assert cloud.token_count("on_behalf_of") == before


@pytest.mark.e2e
def test_user_without_consent_gets_a_consent_error(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Entra's 65001 for a user who never consented becomes a ConsentError with the fix."""
    with pytest.raises(ConsentError) as info:
        wire(app_env).on_behalf_of().token(_caller(cloud, "newhire"), GRAPH)
    assert "65001" in str(info.value.error_codes)
    assert "adminconsent" in info.value.action


@pytest.mark.e2e
def test_device_code_login_then_commands_as_the_user(
    cloud: LocalCloud, app_env: dict[str, str], tmp_path: Path
) -> None:
    """login (auto-approved as the analyst) keeps an owner-only cache; --as-user then lists
    incidents with the user's delegated token, without signing in again."""
    admin(cloud.emulator, "POST", "devicecode/auto", {"user": "analyst"})

    login = run_cli(app_env, "login", home=tmp_path)
    assert login.returncode == 0, login.stderr
    assert "signed in as analyst@" in login.stdout
    cache = tmp_path / ".defender-bridge" / "msal-cache.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    before = cloud.token_count("device_code")

    listed = run_cli(
        app_env, "incidents", "list", "--as-user", "--limit", "5", "--format", "json", home=tmp_path
    )

    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 5
    assert cloud.token_count("device_code") == before
    log = cloud.admin("GET", "requests")
    bearer_calls = [r for r in log if r["endpoint"] == "graph.incidents.list"]
    assert bearer_calls and bearer_calls[-1]["status"] == 200
    secret_free = login.stdout + login.stderr + listed.stdout + listed.stderr
    assert "eyJ" not in secret_free


@pytest.mark.e2e
def test_as_user_without_login_is_a_clear_error(
    cloud: LocalCloud, app_env: dict[str, str], tmp_path: Path
) -> None:
    """--as-user with no signed-in user says to run login, exit 1."""
    result = run_cli(app_env, "incidents", "list", "--as-user", home=tmp_path)
    assert result.returncode == 1
    assert "login" in result.stderr
