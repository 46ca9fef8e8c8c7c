"""A small threaded TCP proxy that adds latency per request and counts requests.

Put in front of the emulator's HTTPS port (API pages) or Azurite's plain HTTP ports (storage
calls). It works below TLS, so it cannot read requests; it sees turns instead: a client write
that follows a server answer (or opens the connection) starts a new request, is delayed by
``delay`` seconds before it is forwarded, and is counted. On HTTP/1.1 keep-alive, where a
client sends one request and waits for its answer, that is one delay and one count per
request (plus the TLS handshake's own turn on a new connection, as a real network would
charge). ``requests`` counts only turns whose first bytes are an HTTP method (plain HTTP);
``turns`` counts every turn (what TLS lets us see).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"PATCH ", b"MERGE ", b"OPTIONS ")


class LatencyProxy:
    """Forward 127.0.0.1:<port> to ``target_port``; ``delay`` seconds added per request."""

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.requests = 0
        self.turns = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self._server.getsockname()[1])
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop = True
        self._server.close()

    def counts(self) -> tuple[int, int]:
        """(requests, turns) so far."""
        with self._lock:
            return self.requests, self.turns

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # True when the server spoke last: the client's next write is a new request
        state = {"answered": True}
        up = threading.Thread(target=self._pump_up, args=(client, upstream, state), daemon=True)
        up.start()
        self._pump(upstream, client, state)
        up.join(timeout=5)

    def _pump_up(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := src.recv(65536):
                if state["answered"]:
                    state["answered"] = False
                    with self._lock:
                        self.turns += 1
                        if data.startswith(_METHODS):
                            self.requests += 1
                    if self.delay:
                        time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(dst, src)

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := src.recv(65536):
                state["answered"] = True
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(dst, src)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
