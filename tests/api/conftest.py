"""The HTTP API's two faces for tests: the Functions triggers of ``function_app`` (real
``func.HttpRequest``) and ``python -m shared serve`` (a real WSGI server on a free port), both
against the emulator and Azurite, with the same small client interface.

Every request carries a real Entra token from the emulator (``Face.token``, by default the
home tenant's analyst, who holds every app role and ``Tenants.All``; ``token=None`` sends
none, ``token=<jwt>`` another caller's), and under ``serve`` the server's per-run key, as the
Functions host's function key would be sent (``key=None`` leaves it out).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import azure.functions as func
import pytest
import requests

from tests.conftest import LocalCloud

SIGNING_KEY = "test-signing-key-0123456789abcdef-0123456789"
PUBLIC = "https://bridge.example.net"


@functools.cache
def indexed_functions() -> dict[str, Any]:
    """``function_app``'s functions by name, indexed once (indexing twice is refused)."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


@dataclass
class Answer:
    """A response as a test sees it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class _Default:
    """The face's own token or key (a sentinel: ``None`` means "send none")."""


DEFAULT: Any = _Default()
KEY_HEADER = "x-functions-key"
#: a function key as the Functions host would have accepted it (its value is the host's concern)
HOST_KEY = "host-function-key-0123456789"


@dataclass
class Face:
    """One way of calling the API."""

    name: str
    base: str
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    #: the bearer token sent when a request names none (a real token from the emulator)
    token: str | None = None
    #: the function key sent with every request: ``serve``'s per-run key, or under Functions
    #: one the host would have accepted
    key: str | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        token: str | None = DEFAULT,
        key: str | None = DEFAULT,
    ) -> Answer:
        headers = dict(headers or {})
        token = self.token if token is DEFAULT else token
        if token is not None and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {token}"
        key = self.key if key is DEFAULT else key
        if key is not None and not any(k.lower() == KEY_HEADER for k in headers):
            headers[KEY_HEADER] = key
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        answer = self._send(method, path, params, headers, body or b"")
        self.calls.append((method, path, answer.status))
        return answer

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def follow(self, url: str, **kw: Any) -> Answer:
        """GET an absolute URL this API returned (Location, nextLink)."""
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == self.base, url
        query = [tuple(p.split("=", 1)) for p in parts.query.split("&") if p]
        from urllib.parse import unquote_plus

        params = [(unquote_plus(k), unquote_plus(v)) for k, v in query]
        return self.request("GET", parts.path.removeprefix("/api"), params=params, **kw)

    def _send(
        self, method: str, path: str, params: Any, headers: dict[str, str], body: bytes
    ) -> Answer:
        raise NotImplementedError


class FunctionsFace(Face):
    """Calls the indexed function of the route with a real ``func.HttpRequest``."""

    def _send(
        self, method: str, path: str, params: Any, headers: dict[str, str], body: bytes
    ) -> Answer:
        from shared.api.routes import match

        route, route_params = match(method, path)
        function = indexed_functions()[route.function_name]
        query = urlencode(params or {}, doseq=True)
        url = f"{self.base}/api{path}" + (f"?{query}" if query else "")
        request = func.HttpRequest(
            method=method,
            url=url,
            headers=headers,
            params={},
            route_params=route_params,
            body=body,
        )
        response = function.get_user_function()(request)
        return Answer(response.status_code, dict(response.headers), response.get_body())


class ServeFace(Face):
    """Calls ``python -m shared serve``'s WSGI server over HTTP."""

    def _send(
        self, method: str, path: str, params: Any, headers: dict[str, str], body: bytes
    ) -> Answer:
        response = requests.request(
            method,
            f"{self.base}/api{path}",
            params=params,
            headers=headers,
            data=body,
            timeout=120,
            allow_redirects=False,
        )
        return Answer(response.status_code, dict(response.headers), response.content)


@dataclass(frozen=True)
class Served:
    """A running ``serve`` server: its origin and its per-run key."""

    url: str
    key: str | None


@pytest.fixture(scope="session")
def served() -> Iterator[Served]:
    """One ``serve`` server for the session (it reads the environment per request)."""
    from shared.cli.serve import build_server

    server = build_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}", getattr(server, "key", None))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def serve_url(served: Served) -> str:
    return served.url


@pytest.fixture
def api_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """``app_env`` plus the HTTP API's settings (push to a local receiver, a signing key)."""
    from shared import bootstrap

    extra = {
        "API_SIGNING_KEY": SIGNING_KEY,
        "API_PUSH_HOST_SUFFIXES": "localhost",
        # the emulator-only local receiver: test webhooks listen on https://localhost:<port>
        "API_PUSH_ALLOW_LOCAL_RECEIVER": "true",
        "DEFENDER_FEATURES": "ingest,update,hunting",
        # tests send many requests as one caller; tests/api/test_rate_limit.py sets its own
        "API_CALLER_RATE_LIMIT": "10000/60",
        "API_CALLER_HUNTING_RATE_LIMIT": "10000/60",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    _clear_push_queues(app_env["DATA_STORAGE_CONNECTION_STRING"])
    bootstrap.services.cache_clear()
    yield {**app_env, **extra}
    bootstrap.services.cache_clear()


def _clear_push_queues(connection_string: str) -> None:
    """Storage is cleared per test, queues are not: push messages a test left waiting (a retry
    due in a minute) must not reach the next test's subscriptions."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueServiceClient

    service = QueueServiceClient.from_connection_string(connection_string)
    for name in ("defender-push", "defender-push-poison"):
        with contextlib.suppress(ResourceNotFoundError):
            service.get_queue_client(name).clear_messages()


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change settings mid-test (the composition root is rebuilt)."""
    from shared import bootstrap

    for name, value in values.items():
        monkeypatch.setenv(name, value)
    bootstrap.services.cache_clear()


@pytest.fixture(params=["functions", "serve"])
def face(request: pytest.FixtureRequest, api_env: dict[str, str], cloud: LocalCloud) -> Face:
    """Each test runs through both faces, as the home tenant's analyst (every role)."""
    token = cloud.emulator.api_token("analyst")
    if request.param == "functions":
        # what a caller sends the host in API_AUTH_MODE=key (the host checks it before the
        # function runs: tests/functions checks that level; the app ignores it otherwise)
        return FunctionsFace("functions", PUBLIC, token=token, key=HOST_KEY)
    served = request.getfixturevalue("served")
    return ServeFace("serve", served.url, token=token, key=served.key)


def caller(cloud: LocalCloud, *roles: str, principal: str = "newhire") -> str:
    """A real token for the API from a home-tenant user holding exactly ``roles`` (the
    emulator's app-role assignment for ``principal`` is replaced)."""
    cloud.admin("POST", "api/roles", {"principal": principal, "roles": list(roles)})
    return cloud.emulator.api_token(principal)


def forged_principal(*roles: str) -> dict[str, str]:
    """An ``X-MS-CLIENT-PRINCIPAL`` header with these app roles, as Easy Auth would send it:
    anyone can write one, so it must grant nothing."""
    data = {
        "auth_typ": "aad",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": "t"}],
    }
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(data).encode()).decode()}


def tenants(cloud: LocalCloud) -> tuple[str, str]:
    """Two registered tenants: home and a customer."""
    ids = cloud.emulator.tenant_ids
    return ids[0], ids[1]


def truth(cloud: LocalCloud, tenant: str) -> list[dict[str, Any]]:
    return list(cloud.admin("GET", f"truth/{tenant}/incidents?api=graph")["value"])


def drain_queue(connection_string: str, name: str) -> list[str]:
    """Take every message of a queue (decoded text)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    client = QueueClient.from_connection_string(
        connection_string, name, message_decode_policy=TextBase64DecodePolicy()
    )
    out: list[str] = []
    try:
        while True:
            batch = list(client.receive_messages(max_messages=32, visibility_timeout=1))
            if not batch:
                return out
            for message in batch:
                out.append(str(message.content))
                client.delete_message(message)
    except ResourceNotFoundError:
        return out


def environ_value(name: str) -> str:
    return os.environ[name]


def storage_snapshot(connection_string: str) -> dict[str, Any]:
    """Everything the app could have written: every blob (name, etag), every table row (keys,
    etag) and every queue's messages (peeked), so a test can prove nothing changed."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    blobs = BlobServiceClient.from_connection_string(connection_string)
    tables = TableServiceClient.from_connection_string(connection_string)
    queues = QueueServiceClient.from_connection_string(connection_string)
    snapshot: dict[str, Any] = {}
    for container in blobs.list_containers():
        client = blobs.get_container_client(container.name)
        snapshot[f"blob:{container.name}"] = sorted((b.name, b.etag) for b in client.list_blobs())
    for table in tables.list_tables():
        rows = tables.get_table_client(table.name).list_entities()
        snapshot[f"table:{table.name}"] = sorted(
            (r["PartitionKey"], r["RowKey"], r.metadata["etag"]) for r in rows
        )
    for queue in queues.list_queues():
        peeked = queues.get_queue_client(queue.name).peek_messages(max_messages=32)
        snapshot[f"queue:{queue.name}"] = sorted(m.id for m in peeked)
    return snapshot


def upstream_calls(cloud: LocalCloud) -> dict[str, Any]:
    """The emulator's Defender/Graph requests and every token it issued, by key: a refused
    request must leave both as they were (signing-key fetches are not counted: reading
    Entra's public keys is how a token is checked)."""
    stats = cloud.stats()
    requests_ = {
        (r["endpoint"], r["tenant"], r["status"]): r["count"]
        for r in stats["requests"]
        if str(r["endpoint"]).startswith(("legacy.", "graph.", "keyvault."))
    }
    tokens = {(t["grant"], t["tenant"], t["resource"]): t["count"] for t in stats["tokens"]}
    return {"requests": requests_, "tokens": tokens}


@pytest.fixture
def push_hook(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> Iterator[Any]:
    """An https webhook receiver on localhost that the app trusts, with push retries fast
    (``tests.api.pushkit.Hook``)."""
    from tests.api.pushkit import hook_server, trust

    with hook_server() as server:
        trust(monkeypatch, api_env, tmp_path, server.ca_pem)
        setenv(monkeypatch, API_PUSH_RETRY_SECONDS="1", API_PUSH_TIMEOUT_SECONDS="2")
        yield server
