"""The push sender against local TLS servers: it connects to the address it is given, verifies
the certificate for the target's host name (SNI), returns a redirect as an answer without
following it, and caps the whole exchange however slowly the receiver answers."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from shared.push.target import CallbackTarget
from shared.push.transport import Sender, tls_context

LOOPBACK = ipaddress.ip_address("127.0.0.1")
Handler = Callable[[ssl.SSLSocket], None]


@contextmanager
def tls_server(ca: trustme.CA, name: str, handle: Handler) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting a certificate for ``name``; ``handle`` talks."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = int(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_session, args=(raw,), daemon=True).start()

    def _session(raw: socket.socket) -> None:
        try:
            with context.wrap_socket(raw, server_side=True) as tls:
                handle(tls)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _read_request(tls: ssl.SSLSocket) -> bytes:
    """The request's head and body (all of it: closing with unread bytes would reset)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            return data
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    length = next(
        (
            int(line.split(":", 1)[1])
            for line in head.split("\r\n")
            if line.lower().startswith("content-length:")
        ),
        0,
    )
    while len(data) - len(head) - 4 < length:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _answer(status: str, headers: str = "") -> Handler:
    def handle(tls: ssl.SSLSocket) -> None:
        seen.append(_read_request(tls))
        tls.sendall(f"HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\n\r\n".encode())

    seen: list[bytes] = []
    handle.seen = seen  # type: ignore[attr-defined]
    return handle


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def sender(ca: trustme.CA, tmp_path: Path) -> Sender:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.cert_pem.bytes())
    return Sender(context=tls_context(bundle), clock=lambda: datetime.now(UTC))


def test_posts_to_the_given_address_with_the_hosts_name_and_reads_retry_after(
    ca: trustme.CA, sender: Sender
) -> None:
    handler = _answer("429 Too Many Requests", "Retry-After: 7\r\n")
    with tls_server(ca, "localhost", handler) as port:
        target = CallbackTarget("localhost", port, "/hook?sig=x", local=True)
        answer = sender.post(target, LOOPBACK, b"{}", {"X-Test": "1"}, cap=5)
    assert answer.status == 429 and answer.retry_after == 7
    request = handler.seen[0].decode()  # type: ignore[attr-defined]
    assert request.startswith("POST /hook?sig=x HTTP/1.1\r\n")
    assert f"Host: localhost:{port}\r\n" in request and "X-Test: 1" in request


def test_a_redirect_is_an_answer_never_followed(ca: trustme.CA, sender: Sender) -> None:
    handler = _answer("302 Found", "Location: https://169.254.169.254/latest\r\n")
    with tls_server(ca, "localhost", handler) as port:
        target = CallbackTarget("localhost", port, "/hook", local=True)
        answer = sender.post(target, LOOPBACK, b"{}", {}, cap=5)
    assert answer.status == 302 and len(handler.seen) == 1  # type: ignore[attr-defined]


def test_the_certificate_must_be_for_the_targets_host_and_trusted(
    ca: trustme.CA, sender: Sender
) -> None:
    with tls_server(ca, "other.example", _answer("200 OK")) as port:
        target = CallbackTarget("localhost", port, "/hook", local=True)
        wrong_name = sender.post(target, LOOPBACK, b"{}", {}, cap=5)
    assert wrong_name.status is None and (wrong_name.error or "").startswith("TLS")
    with tls_server(trustme.CA(), "localhost", _answer("200 OK")) as port:
        target = CallbackTarget("localhost", port, "/hook", local=True)
        untrusted = sender.post(target, LOOPBACK, b"{}", {}, cap=5)
    assert untrusted.status is None and (untrusted.error or "").startswith("TLS")


@pytest.mark.parametrize("mode", ["silent", "drip"])
def test_a_receiver_that_never_finishes_costs_at_most_the_cap(
    ca: trustme.CA, sender: Sender, mode: str
) -> None:
    release = threading.Event()

    def slow(tls: ssl.SSLSocket) -> None:
        _read_request(tls)
        if mode == "drip":  # a byte every 0.2 s: each read is quick, the whole never ends
            tls.sendall(b"HTTP/1.1 200 OK\r\n")
            while not release.wait(0.2):
                tls.sendall(b"X")
        release.wait(30)

    with tls_server(ca, "localhost", slow) as port:
        target = CallbackTarget("localhost", port, "/hook", local=True)
        started = time.monotonic()
        answer = sender.post(target, LOOPBACK, b"{}", {}, cap=1.0)
        elapsed = time.monotonic() - started
        release.set()
    assert answer.status is None and answer.error == "timeout"
    assert elapsed < 5  # the receiver would have held it for 30 s


def test_nothing_listening_is_an_answer_not_an_exception(sender: Sender) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = int(probe.getsockname()[1])
    answer = sender.post(CallbackTarget("localhost", port, "/", True), LOOPBACK, b"", {}, cap=2)
    assert answer.status is None and answer.error == "connection refused"
