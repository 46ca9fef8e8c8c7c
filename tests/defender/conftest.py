"""Fixtures for the API client against the running emulator: real MSAL, Key Vault and HTTPS.

``make_client(api, **settings)`` wires a client through the real composition root
(``bootstrap.build``) for the home tenant. Quotas are raised on both sides unless a test sets
its own, so the contract tests never wait for Microsoft's per-minute windows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from shared.defender.client import DefenderClient
from tests.conftest import LocalCloud

GENEROUS = "1000/1"
ClientFactory = Callable[..., DefenderClient]


@pytest.fixture
def make_client(
    app_env: dict[str, str], cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> ClientFactory:
    """Build a client for the home tenant on ``api`` with extra app settings."""
    from shared import bootstrap
    from shared.core.settings import Settings

    for family in ("incidents", "alerts", "hunting"):
        cloud.admin("POST", "quotas", {"family": family, "limits": [{"calls": 1000, "seconds": 1}]})

    def make(api: str, **settings: str) -> DefenderClient:
        env = dict(os.environ)
        env.update(
            {
                "DEFENDER_API": api,
                "API_RATE_LIMIT_INCIDENTS": GENEROUS,
                "API_RATE_LIMIT_ALERTS": GENEROUS,
                "API_RATE_LIMIT_HUNTING": GENEROUS,
            }
        )
        env.update(settings)
        services = bootstrap.build(Settings.from_env(env))
        client: DefenderClient = services.client_for(services.settings.identity.tenant_id)
        return client

    return make


@pytest.fixture(params=["legacy", "graph"])
def surface(request: pytest.FixtureRequest) -> str:
    """Each contract test runs once per API surface."""
    return str(request.param)


def truth(cloud: LocalCloud, api: str) -> list[dict[str, Any]]:
    """The home tenant's incidents as ``api`` renders them (emulator ground truth)."""
    tenant = cloud.emulator.home_tenant_id
    return list(cloud.admin("GET", f"truth/{tenant}/incidents?api={api}")["value"])
