"""Every Defender client the composition root builds takes its retry rules from the settings.

The app, ``--as-user`` and HTTP ``context=user`` clients are built by one factory, so
``API_MAX_RETRY_WAIT_SECONDS``, the attempts and the time budget cannot drift apart between them.
Building ``Services`` makes no network call (clients connect on first use), so this runs in
milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import bootstrap
from shared.api.access import Principal
from shared.api.app import user_client
from shared.core.settings import Settings
from shared.credentials.values import CallerClaims

TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT = "22222222-2222-2222-2222-222222222222"
SETTINGS = {
    "DEFENDER_TENANT_ID": TENANT,
    "DEFENDER_CLIENT_ID": CLIENT,
    "KEY_VAULT_URL": "https://myvault.vault.azure.net/",
    "DATA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "API_MAX_RETRY_WAIT_SECONDS": "7",
    "API_MAX_ATTEMPTS": "4",
    "API_TIME_BUDGET_SECONDS": "90",
}


@pytest.fixture
def services() -> bootstrap.Services:
    return bootstrap.build(Settings.from_env(SETTINGS))


def _rules(client: object) -> tuple[float | None, int, float]:
    retry = client.retry  # type: ignore[attr-defined]
    return retry.max_wait, retry.max_attempts, retry.budget


def test_app_client_obeys_the_retry_settings(services: bootstrap.Services) -> None:
    assert _rules(services.client_for(TENANT)) == (7.0, 4, 90.0)


def test_cli_user_client_obeys_the_retry_settings(services: bootstrap.Services) -> None:
    """``--as-user``: the signed-in user's client waits no longer than the app's."""
    assert _rules(services.user_client_for(TENANT)) == (7.0, 4, 90.0)


def test_http_user_client_obeys_the_retry_settings(services: bootstrap.Services) -> None:
    """HTTP ``context=user``: the on-behalf-of client waits no longer than the app's."""
    claims = CallerClaims(
        tenant=TENANT,
        object_id="33333333-3333-3333-3333-333333333333",
        audience=f"api://{CLIENT}",
        expires=datetime.now(UTC) + timedelta(hours=1),
        scopes=("user_impersonation",),
    )
    caller = Principal(frozenset(), frozenset({TENANT}), claims.subject, claims, "caller-token")
    assert _rules(user_client(services, caller, TENANT)) == (7.0, 4, 90.0)
