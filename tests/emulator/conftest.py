"""Fixtures for the emulator's own tests: one running emulator per session, plus HTTP helpers.

The machine presets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE, which would override `Session.verify`
(psf/requests#3829), so sessions here set `trust_env = False` and verify with the
emulator's CA explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from emulator.ratelimit import Limit
from emulator.server import Emulator, EmulatorConfig

LEGACY_SCOPE = "https://api.security.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    """One seeded emulator for the whole emulator test session.

    Quotas are off here (many tests call the same tenant within a minute); quota tests set
    their own through the admin API, and `fresh` resets them to this configuration.
    """
    unlimited: dict[str, tuple[Limit, ...]] = {"incidents": (), "hunting": (), "alerts": ()}
    with Emulator(EmulatorConfig(seed=11, quotas=unlimited)) as emulator:
        yield emulator


@pytest.fixture
def fresh(emu: Emulator, http: requests.Session) -> Iterator[Emulator]:
    """The session emulator reset to its seeded state (no stats, faults or quota changes),
    and reset again afterwards so later tests never inherit changes."""
    http.post(f"{emu.url}/_emulator/reset", timeout=10).raise_for_status()
    yield emu
    http.post(f"{emu.url}/_emulator/reset", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def http(emu: Emulator) -> Iterator[requests.Session]:
    """A requests session that trusts the emulator CA (and ignores the CA env variables)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emu.ca_path)
    yield session
    session.close()


def token_for(http: requests.Session, emu: Emulator, scope: str, tenant: str | None = None) -> str:
    """A client-credentials token straight from the token endpoint."""
    response = http.post(
        f"{emu.url}/{tenant or emu.home_tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "scope": scope,
        },
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def legacy_token(emu: Emulator, http: requests.Session) -> str:
    """A legacy Defender API token for the home tenant."""
    return token_for(http, emu, LEGACY_SCOPE)


@pytest.fixture(scope="session")
def graph_token(emu: Emulator, http: requests.Session) -> str:
    """A Graph token for the home tenant."""
    return token_for(http, emu, GRAPH_SCOPE)


def get_json(
    http: requests.Session, url: str, token: str | None, **params: Any
) -> requests.Response:
    """GET with an optional bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(url, headers=headers, params=params or None, timeout=30)


def admin(http: requests.Session, emu: Emulator, method: str, path: str, body: Any = None) -> Any:
    """Call the admin API and return the JSON body (raises on HTTP errors)."""
    response = http.request(method, f"{emu.url}/_emulator/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()
