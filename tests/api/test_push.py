"""Push subscriptions through both faces and delivery to a local https receiver (trustme
certificate): signed delivery of matching incidents only, retries and dead-letter, and a 404
from the receiver removes the subscription."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.api.conftest import Face, setenv, tenants
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e


@dataclass
class Receiver:
    """An https webhook receiver on localhost that records what it gets."""

    url: str
    ca_pem: bytes
    status: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    state = Receiver("", ca.cert_pem.bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            state.received.append((dict(self.headers.items()), self.rfile.read(length)))
            status = state.status.pop(0) if len(state.status) > 1 else state.status[0]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"https://localhost:{server.server_port}/hook?sig=receiver-sig-secret"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def trusting(
    receiver: Receiver,
    api_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Receiver:
    """The app trusts the receiver's CA too (a bundle of the emulator's and the receiver's)."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(api_env["EMULATOR_CA_CERT"]).read_bytes() + receiver.ca_pem)
    setenv(monkeypatch, EMULATOR_CA_CERT=str(bundle))
    receiver.received.clear()
    receiver.status[:] = [200]
    return receiver


def _incidents(cloud: LocalCloud) -> tuple[str, Any, Any]:
    from shared import bootstrap

    home, _ = tenants(cloud)
    items = bootstrap.services().client_for(home).list_incidents(limit=100)
    high = next(i for i in items if i.severity == "high")
    low = next(i for i in items if i.severity in ("low", "informational"))
    return home, high, low


def test_signed_delivery_of_matching_incidents_only_and_404_unsubscribes(
    face: Face, cloud: LocalCloud, trusting: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    from shared import bootstrap

    caplog.set_level(logging.DEBUG)
    created = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": trusting.url, "minSeverity": "high"}
    )
    assert created.status == 201, created.body
    body = created.json()
    location = created.header("Location")
    assert location == f"{face.base}/api/subscriptions/{body['id']}"
    assert "receiver-sig-secret" not in created.body.decode()
    secret = body["secret"]

    home, high, low = _incidents(cloud)
    notifier = bootstrap.services().push_notifier()
    notifier.notify(home, [high, low])
    assert len(trusting.received) == 1
    headers, payload = trusting.received[0]
    delivered = json.loads(payload)
    assert delivered["incident"]["id"] == high.id and delivered["tenant"] == home
    expected = "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    assert headers["X-Defender-Signature"] == expected

    trusting.status[:] = [404]
    notifier.notify(home, [high])
    assert bootstrap.services().subscriptions().get(body["id"]) is None
    assert face.request("DELETE", location.removeprefix(face.base + "/api")).status == 404
    logged = caplog.text
    assert "receiver-sig-secret" not in logged and secret not in logged


def test_retries_then_dead_letter(cloud: LocalCloud, trusting: Receiver, face: Face) -> None:
    from azure.storage.blob import BlobServiceClient

    from shared import bootstrap
    from shared.push import DEADLETTER_CONTAINER, PushNotifier

    face.request("POST", "/subscriptions", json_body=trusting.url)
    svc = bootstrap.services()
    waits: list[float] = []
    notifier = PushNotifier(
        store=svc.subscriptions(),
        session=svc.session,
        signing_key=svc.settings.api_signing_key,
        suffixes=svc.settings.api_push_host_suffixes,
        dead_letter=svc.blob_service.get_container_client(DEADLETTER_CONTAINER),
        clock=svc.clock,
        max_attempts=3,
        sleep=waits.append,
    )
    home, high, _ = _incidents(cloud)
    trusting.status[:] = [500, 503, 502, 200]
    notifier.notify(home, [high])
    assert len(trusting.received) == 3 and waits == [1.0, 2.0]
    assert notifier.dead_lettered == 1
    blobs = BlobServiceClient.from_connection_string(
        svc.settings.storage_connection_string or ""
    ).get_container_client(DEADLETTER_CONTAINER)
    names = [b.name for b in blobs.list_blobs()]
    assert len(names) == 1
    record = blobs.download_blob(names[0]).readall().decode()
    assert "receiver-sig-secret" not in record and json.loads(record)["reason"] == "HTTP 502"


def test_subscribe_forms_and_callback_checks(face: Face, trusting: Receiver) -> None:
    bare = face.request("POST", "/subscriptions", json_body=trusting.url)
    assert bare.status == 201
    text = face.request(
        "POST",
        "/subscriptions",
        body=trusting.url.encode(),
        headers={"Content-Type": "text/plain"},
    )
    # a web page can POST text/plain to a local port without a CORS preflight: serve refuses it
    assert text.status == (415 if face.name == "serve" else 201)
    removed = face.request("DELETE", "/subscriptions", json_body={"callbackUrl": trusting.url})
    made = 1 if face.name == "serve" else 2
    assert removed.status == 200 and removed.json() == {"deleted": made}
    assert face.request("DELETE", "/subscriptions", json_body=trusting.url).status == 404
    for url, reason in (
        ("http://localhost/hook", "https"),
        ("https://evil.example.com/hook", "not allowed"),
        ("https://user:pw@localhost/hook", "credentials"),
        ("https://localhost.evil.example/hook", "not allowed"),
    ):
        answer = face.request("POST", "/subscriptions", json_body={"callbackUrl": url})
        assert answer.status == 400 and reason in answer.json()["error"]["message"], url
    bad = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": trusting.url, "minSeverity": "huge"}
    )
    assert bad.status == 400
    extra = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": trusting.url, "filter": {}}
    )
    assert extra.status == 400 and "'filter'" in extra.json()["error"]["message"]


def test_host_suffix_default_is_logic_apps(monkeypatch: pytest.MonkeyPatch, face: Face) -> None:
    from shared.push import host_allowed

    assert host_allowed("prod-12.westeurope.logic.azure.com", (".logic.azure.com",))
    assert not host_allowed("logic.azure.com.evil.net", (".logic.azure.com",))
    assert not host_allowed("evillogic.azure.com", (".logic.azure.com",))
    monkeypatch.delenv("API_PUSH_HOST_SUFFIXES")
    setenv(monkeypatch)
    answer = face.request("POST", "/subscriptions", json_body="https://localhost/hook")
    assert answer.status == 400 and ".logic.azure.com" in answer.json()["error"]["message"]
