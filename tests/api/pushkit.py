"""Test kit for push: webhook receivers, a connection-counting sink, and drivers for ingestion
and the push worker against the emulator and Azurite.

- ``Hook``: an https receiver on ``localhost`` (trustme certificate) whose answers a test scripts
  (a status, a ``Retry-After``, a redirect, or hanging without an answer), recording every
  request and the deliveries it accepted (answered 2xx).
- ``Sink``: a plain TCP listener on a random loopback address at port 443 that counts
  connections: where a delivery that escaped the checks would land.
- ``deliver``/``deliver_until_idle``: run the push worker over the ``defender-push`` queue the
  way the queue trigger does (receive, handle, delete), waiting out retry delays.
"""

from __future__ import annotations

import http.server
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from testkit.env import setenv

#: an answer script entry: a status, (status, headers), or "hang" (read, never answer)
Step = int | tuple[int, dict[str, str]] | str


@dataclass
class Hook:
    """An https receiver on localhost (see the module docstring)."""

    port: int
    ca_pem: bytes
    script: list[Step] = field(default_factory=list)
    default: Step = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook?sig=receiver-sig-secret") -> str:
        return f"https://localhost:{self.port}{path}"

    def next_step(self) -> Step:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def delivery_ids(self) -> list[str]:
        return [h.get("X-Defender-Delivery", "") for h, _ in self.accepted]


@contextmanager
def hook_server() -> Iterator[Hook]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    state = Hook(0, ca.cert_pem.bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = dict(self.headers.items())
            with state.lock:
                state.requests.append((headers, body))
            step = state.next_step()
            if step == "hang":
                state.release.wait(30)
                self.close_connection = True
                return
            status, extra = step if isinstance(step, tuple) else (int(step), {})
            if 200 <= status < 300:  # recorded before the answer leaves: the sender sees it after
                with state.lock:
                    state.accepted.append((headers, body))
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@dataclass
class Sink:
    """A TCP listener at ``ip``:443 that counts connections (and closes them)."""

    ip: str
    connections: int = 0

    @property
    def decimal(self) -> str:
        a, b, c, d = (int(x) for x in self.ip.split("."))
        return str((a << 24) | (b << 16) | (c << 8) | d)


@contextmanager
def sink_listener() -> Iterator[Sink]:
    """A sink on a random 127.x.y.z (other test runs on this machine use other addresses)."""
    rng = random.Random()  # noqa: S311 - an address, not a secret
    ip = f"127.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(2, 254)}"
    listener = socket.create_server((ip, 443))
    listener.settimeout(0.1)
    state = Sink(ip)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            state.connections += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def trust(
    monkeypatch: pytest.MonkeyPatch, api_env: dict[str, str], tmp_path: Path, *pems: bytes
) -> None:
    """Make the app trust the emulator's CA and these receivers' CAs (a bundle)."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(api_env["EMULATOR_CA_CERT"]).read_bytes() + b"".join(pems))
    setenv(monkeypatch, EMULATOR_CA_CERT=str(bundle))


def push_queue(connection_string: str, name: str = "defender-push") -> Any:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    return QueueClient.from_connection_string(
        connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def deliver(connection_string: str) -> Any:
    """Handle every push message visible now, as the queue trigger would."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared import bootstrap
    from shared.usecases.push.delivery import WorkReport

    queue = push_queue(connection_string)
    worker = bootstrap.services().push_worker()
    try:
        return worker.drain(
            lambda: list(queue.receive_messages(max_messages=32, visibility_timeout=120)),
            queue.delete_message,
        )
    except ResourceNotFoundError:
        return WorkReport()


def pending(connection_string: str) -> int:
    """Messages on defender-push, visible or waiting."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        props = push_queue(connection_string).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


def deliver_until_idle(
    connection_string: str, *, timeout: float = 90.0, between: Callable[[], None] | None = None
) -> Any:
    """Run the worker until the push queue is empty (waiting out retry delays)."""
    from shared.usecases.push.delivery import WorkReport

    total = WorkReport()
    deadline = time.monotonic() + timeout
    while True:
        total.add(deliver(connection_string))
        if pending(connection_string) == 0:
            return total
        if time.monotonic() > deadline:
            raise AssertionError(f"the push queue did not drain in {timeout} s: {total}")
        if between is not None:
            between()
        time.sleep(0.5)


def ingest(tenant: str) -> Any:
    """One ingestion run of ``tenant`` with the app's wiring (the push outbox included)."""
    from shared import bootstrap

    result = bootstrap.services().ingestor().run_tenant(tenant)
    assert result.ok, result
    return result
