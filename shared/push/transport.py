"""One delivery over the wire: an HTTPS POST to an address that was checked, with a hard cap.

The sender takes a ``CallbackTarget`` (``shared.push.target``) and one of the addresses
``check_addresses`` approved, opens TCP to exactly that address (no second DNS lookup, no proxy
from the environment), and speaks TLS to it with SNI and certificate verification for the
target's host name. It sends the request with the standard library's ``http.client`` on that
socket, reads the status line and headers, and never follows a redirect (a 3xx is just an
answer). The whole exchange is capped: a timer shuts the socket at the deadline, so a receiver
that accepts and then drips bytes (or never answers) costs at most ``cap`` seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from shared.core.clock import Clock
from shared.push.messages import Answer, retry_after
from shared.push.target import Address, CallbackTarget

#: opens TCP to ``(address, port)`` within ``timeout`` seconds
Connect = Callable[[tuple[str, int], float], socket.socket]
USER_AGENT = "DefenderBridge-Push/1.0"
#: response bytes read after the headers (the body is not used; reading a little lets the
#: receiver finish cleanly)
_BODY_READ = 4096


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification on, TLS 1.2 or later; trust ``ca_file`` (the emulator's bundle) or the
    public CAs of certifi (what requests trusts)."""
    if ca_file is None:
        import certifi

        ca_file = Path(certifi.where())
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


class Sender:
    """POSTs deliveries (see the module docstring).

    Args:
        context: the TLS context (``tls_context``).
        connect: opens TCP to an address (tests count connection attempts with it).
        clock: now, for ``Retry-After`` dates.
    """

    def __init__(
        self,
        *,
        context: ssl.SSLContext,
        clock: Clock,
        connect: Connect = _connect,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._context = context
        self._connect = connect
        self._clock = clock
        self._monotonic = monotonic

    def post(
        self,
        target: CallbackTarget,
        address: Address,
        body: bytes,
        headers: Mapping[str, str],
        *,
        cap: float,
    ) -> Answer:
        """One POST; never raises for what the network or the receiver does."""
        deadline = self._monotonic() + cap
        try:
            raw = self._connect((str(address), target.port), cap)
        except TimeoutError:
            return Answer(None, error="timeout")
        except OSError as exc:
            return Answer(None, error=_describe(exc))
        live = [raw]  # the socket to shut at the deadline (the TLS one once wrapped)
        killer = threading.Timer(max(0.0, deadline - self._monotonic()), lambda: _shut(live[-1]))
        killer.daemon = True
        killer.start()
        try:
            return self._exchange(live, target, body, headers, deadline)
        except TimeoutError:
            return Answer(None, error="timeout")
        except ssl.SSLCertVerificationError as exc:
            return Answer(None, error=f"TLS: {exc.verify_message or 'certificate not trusted'}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if self._monotonic() >= deadline:
                return Answer(None, error="timeout")
            return Answer(None, error=_describe(exc))
        finally:
            killer.cancel()
            for sock in live:
                sock.close()

    def _exchange(
        self,
        live: list[socket.socket],
        target: CallbackTarget,
        body: bytes,
        headers: Mapping[str, str],
        deadline: float,
    ) -> Answer:
        live[0].settimeout(max(0.05, deadline - self._monotonic()))
        tls = self._context.wrap_socket(live[0], server_hostname=target.host)
        live.append(tls)
        connection = http.client.HTTPConnection(target.host, target.port)
        connection.sock = tls  # already connected to the checked address: never reconnects
        try:
            connection.putrequest("POST", target.path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", target.authority)
            connection.putheader("User-Agent", USER_AGENT)
            connection.putheader("Connection", "close")
            connection.putheader("Content-Length", str(len(body)))
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            if self._monotonic() >= deadline:
                # the deadline shut the socket mid-answer: what was parsed is not an answer
                return Answer(None, error="timeout")
            status = response.status
            wait = retry_after(response.getheader("Retry-After"), self._now())
            with contextlib.suppress(OSError, http.client.HTTPException):
                response.read(_BODY_READ)
            return Answer(status, retry_after=wait)
        finally:
            connection.close()

    def _now(self) -> datetime:
        return self._clock()


def _shut(sock: socket.socket) -> None:
    # the deadline passed: unblock whatever read or write is waiting (the base class's
    # shutdown, not the TLS layer's, which would try to talk to the peer)
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    return type(exc).__name__
