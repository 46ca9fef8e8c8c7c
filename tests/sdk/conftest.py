"""Microsoft's Graph SDK for Python (`msgraph-sdk`, requirements-sdk.txt) against the emulator.

A user points `GraphServiceClient` at the local cloud the way docs/local-cloud.md shows: a token
from the emulator's Entra through MSAL, given to the SDK by a custom access-token provider, and
an httpx client that trusts the emulator's CA (an `ssl.SSLContext`, so the machine's CA
variables do not matter: docs/local-cloud.md#ca-bundle-variables). Every raw response the SDK
parsed is captured by an httpx event hook, so each test can compare the SDK's objects with the
JSON on the wire.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msal
import pytest
import requests
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from emulator.ratelimit import Limit
from emulator.server import Emulator, EmulatorConfig

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
T = TypeVar("T")


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    """One seeded emulator for the SDK tests (quotas off: the tests page a lot)."""
    unlimited: dict[str, tuple[Limit, ...]] = {"incidents": (), "hunting": (), "alerts": ()}
    config = EmulatorConfig(
        seed=5, home_incidents=120, customer_tenants=1, customer_incidents=10, quotas=unlimited
    )
    with Emulator(config) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def http(emu: Emulator) -> Iterator[requests.Session]:
    """requests for MSAL and the admin API: trusts the emulator CA, ignores CA variables."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emu.ca_path)
    yield session
    session.close()


@pytest.fixture
def fresh(emu: Emulator, http: requests.Session) -> Iterator[Emulator]:
    """The emulator back in its seeded state before and after the test."""
    http.post(f"{emu.url}/_emulator/reset", timeout=10).raise_for_status()
    yield emu
    http.post(f"{emu.url}/_emulator/reset", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def msal_app(emu: Emulator, http: requests.Session) -> msal.ConfidentialClientApplication:
    """The app's MSAL client against the emulator's Entra (instance discovery off: a local
    authority, docs/local-cloud.md#msal)."""
    return msal.ConfidentialClientApplication(
        emu.client_id,
        client_credential=emu.client_secret,
        authority=f"{emu.url}/{emu.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    )


class MsalTokenProvider(AccessTokenProvider):
    """Kiota access-token provider backed by MSAL client credentials (cached by MSAL)."""

    def __init__(self, app: msal.ConfidentialClientApplication, host: str) -> None:
        self._app = app
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        if not self._hosts.is_url_host_valid(uri):
            return ""  # never send the token to another host
        result = self._app.acquire_token_for_client([GRAPH_SCOPE])
        if "access_token" not in result:
            raise RuntimeError(f"no token: {result.get('error')}")
        return str(result["access_token"])

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


@dataclass
class Wire:
    """The raw JSON bodies of the responses the SDK received, in order, by request URL."""

    responses: list[tuple[str, str, int, Any]] = field(default_factory=list)

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        body = response.json() if response.content else None
        request = response.request
        self.responses.append((request.method, str(request.url), response.status_code, body))

    def last(self, method: str, path_part: str) -> Any:
        """The body of the last `method` response whose URL contains `path_part`."""
        for m, url, _, body in reversed(self.responses):
            if m == method and path_part in url:
                return body
        raise AssertionError(f"no {method} response for {path_part}: {self.responses}")


@dataclass
class Sdk:
    """What a test needs: a way to run SDK coroutines, and the captured wire."""

    emu: Emulator
    app: msal.ConfidentialClientApplication
    wire: Wire = field(default_factory=Wire)

    @property
    def base(self) -> str:
        return f"{self.emu.url}/v1.0"

    def run(self, work: Callable[[GraphServiceClient], Awaitable[T]]) -> T:
        """Run `work(client)` in a fresh event loop with a fresh client (httpx clients belong
        to one loop)."""

        async def main() -> T:
            context = ssl.create_default_context(cafile=str(self.emu.ca_path))
            # Our own transport, closed by us: msgraph-core 1.5.2's AsyncGraphTransport wraps
            # the client's transport without forwarding aclose(), so closing the client alone
            # leaks its connections.
            transport = httpx.AsyncHTTPTransport(verify=context)
            client = httpx.AsyncClient(
                transport=transport, event_hooks={"response": [self.wire.hook]}
            )
            http_client = GraphClientFactory.create_with_default_middleware(client=client)
            host = urlsplit(self.emu.url).hostname or ""
            auth = BaseBearerTokenAuthenticationProvider(MsalTokenProvider(self.app, host))
            adapter = GraphRequestAdapter(auth, client=http_client)
            adapter.base_url = self.base  # the emulator instead of graph.microsoft.com
            try:
                return await work(GraphServiceClient(request_adapter=adapter))
            finally:
                await client.aclose()
                await transport.aclose()

        return asyncio.run(main())


@pytest.fixture
def sdk(fresh: Emulator, msal_app: msal.ConfidentialClientApplication) -> Sdk:
    """The SDK against a freshly reset emulator."""
    return Sdk(fresh, msal_app)
