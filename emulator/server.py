"""The local cloud on local ports: one HTTPS port for Entra ID, Key Vault, Defender, Graph and
the admin API, plus a plain-HTTP port for the App Service managed-identity endpoint.

Usage (tests and the demo)::

    with Emulator(EmulatorConfig(seed=1)) as emu:
        os.environ.update(emu.app_settings())

`Emulator` is the control plane (`emulator.control`: the state and every admin operation,
callable in process) plus what serves it: this module binds the ports, parses each request,
finds its route (`emulator.routes`), injects the configured faults, calls the handler and
records the request in the stats. Services are routed by path on the HTTPS port, so
`DEFENDER_AUTHORITY_URL`, `DEFENDER_LEGACY_API_URL`, `DEFENDER_GRAPH_API_URL` and
`KEY_VAULT_URL` all point at `emu.url`. A trustme CA signs the server certificate for both
`127.0.0.1` and `localhost`, so tests can use `localhost` as "another host" (e.g. to check a
client refuses to follow a foreign nextLink).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

from emulator import defender, entra, routes, stats
from emulator.config import EmulatorConfig
from emulator.control import ControlPlane
from emulator.http import Request, Response, json_response
from emulator.model import Clock, format_time, utc_now
from emulator.state import CERT_PEM_NAME, CERT_PFX_NAME, SECRET_NAME

__all__ = [
    "CERT_PEM_NAME",
    "CERT_PFX_NAME",
    "SECRET_NAME",
    "Emulator",
    "EmulatorConfig",
    "dumps_settings",
]

logger = logging.getLogger(__name__)

_MAX_BODY = 10 * 1024 * 1024


class Emulator(ControlPlane):
    """Entra ID, managed identity, Key Vault, Defender and Graph security, on local ports.

    Everything but serving (identifiers, users, tokens, behaviours, faults, reset, ...) is the
    control plane's (`emulator.control.ControlPlane`); this class adds the two ports.
    """

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock = utc_now) -> None:
        super().__init__(config, clock)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_path: Path | None = None
        self._port = 0
        self._mi_port = 0

    @property
    def url(self) -> str:
        """`https://127.0.0.1:<port>` (or the configured host)."""
        self._require_started()
        return f"https://{self.config.host}:{self._port}"

    @property
    def mi_url(self) -> str:
        """The managed-identity endpoint, `http://127.0.0.1:<mi_port>/msi/token`."""
        self._require_started()
        return f"http://{self.config.host}:{self._mi_port}/msi/token"

    @property
    def ca_path(self) -> Path:
        """Path of the CA certificate PEM that signed the server certificate."""
        if self._ca_path is None:
            raise RuntimeError("the emulator is not started")
        return self._ca_path

    def app_settings(self) -> dict[str, str]:
        """The app settings that point the Function app at this emulator."""
        return {
            "DEFENDER_TENANT_ID": self.home_tenant_id,
            "DEFENDER_CLIENT_ID": self.client_id,
            "INGEST_TENANTS": ",".join(self.tenant_ids),
            "KEY_VAULT_URL": self.url,
            "DEFENDER_CLIENT_SECRET_NAME": SECRET_NAME,
            "IDENTITY_ENDPOINT": self.mi_url,
            "IDENTITY_HEADER": self.identity_header,
            "DEFENDER_AUTHORITY_URL": self.url,
            "DEFENDER_LEGACY_API_URL": self.url,
            "DEFENDER_GRAPH_API_URL": self.url,
            "EMULATOR_CA_CERT": str(self.ca_path),
        }

    def start(self) -> Emulator:
        """Generate the CA and certificate, seed the data, bind both ports, start serving."""
        if self._servers:
            raise RuntimeError("the emulator is already started")
        state_dir = self.config.state_dir
        if state_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="defender-emulator-")
            state_dir = Path(self._tempdir.name)
        state_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Defender Bridge emulator")
        cert = ca.issue_cert(self.config.host, "127.0.0.1", "localhost")
        self._ca_path = state_dir / "emulator-ca.pem"
        ca.cert_pem.write_to_path(str(self._ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.seed()
        address = self.config.host, self.config.port
        https = _Server(address, self, routes.https_routes(self, lambda: self.url), context)
        mi_address = self.config.host, self.config.mi_port
        mi = _Server(mi_address, self, routes.managed_identity_routes(self), None)
        self._servers = [https, mi]
        self._port = https.server_address[1]
        self._mi_port = mi.server_address[1]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        logger.info("emulator listening on %s (managed identity on %s)", self.url, self.mi_url)
        return self

    def stop(self) -> None:
        """Stop serving and remove the temporary state directory (if the emulator made it)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _require_started(self) -> None:
        if not self._servers:
            raise RuntimeError("the emulator is not started")


class _Server(ThreadingHTTPServer):
    """A threading server; with a TLS context the handshake runs in the request thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        cloud: ControlPlane,
        table: tuple[routes.Route, ...],
        context: ssl.SSLContext | None,
    ) -> None:
        self.cloud = cloud
        self.routes = table
        self.context = context
        self.scheme = "https" if context else "http"
        super().__init__(address, _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(30)
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            _RequestHandler(conn, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects and injected resets are normal here; keep stderr quiet.
        logger.debug("connection error from %s", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DefenderBridgeEmulator/1.0"
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The stdlib logs the request line (path and query); neither carries a token here.
        logger.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        server = self.server
        cloud = server.cloud
        split = urlsplit(self.path)
        bound_host, bound_port = server.server_address[:2]
        host = self.headers.get("Host") or f"{bound_host!s}:{bound_port}"
        request = Request(
            method=self.command,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            base_url=f"{server.scheme}://{host}",
            raw_query=split.query,
        )
        route, match, allowed = routes.match(server.routes, request)
        if route is None or match is None:
            if allowed:
                response = json_response(
                    405,
                    {
                        "error": {
                            "code": "MethodNotAllowed",
                            "message": f"{request.method} is not allowed here; use "
                            f"{', '.join(sorted(allowed))}.",
                        }
                    },
                )
                self._finish(request, "unknown", response)
                return
            response = json_response(
                404,
                {
                    "error": {
                        "code": "NotFound",
                        "message": f"No emulated endpoint at {request.method} {request.path}.",
                    }
                },
            )
            self._finish(request, "unknown", response)
            return
        injector = cloud.faults
        kind = (
            injector.decide(lambda: cloud.token_tenant(entra.bearer_token(request)))
            if route.faultable
            else None
        )
        if kind == "reset":
            tenant = cloud.token_tenant(entra.bearer_token(request))
            self._record(request, route.endpoint, tenant, 0)
            self._reset_connection()
            return
        if kind in ("429", "500", "503"):
            retry_after = injector.config.retry_after
            response = defender.fault_response(
                kind, route.endpoint, request, cloud.clock(), retry_after
            )
            response = _with_tenant(response, cloud.token_tenant(entra.bearer_token(request)))
            self._finish(request, route.endpoint, response)
            return
        if kind == "slow":
            time.sleep(injector.config.slow_seconds)
        try:
            response = route.handler(request, match)
        except Exception:  # noqa: BLE001 - a handler bug must become a 500, not a dead socket
            logger.exception("handler for %s failed", route.endpoint)
            response = json_response(
                500, {"error": {"code": "InternalServerError", "message": "emulator bug"}}
            )
        self._finish(request, route.endpoint, response, truncate=kind == "truncated")

    def _record(self, request: Request, endpoint: str, tenant: str | None, status: int) -> None:
        if endpoint.startswith("admin."):
            return  # the admin API is not part of what tests count
        auth = request.header("authorization")
        if auth is None:
            kind = "none"
        elif auth.lower().startswith("bearer "):
            kind = "bearer"
        else:
            kind = "other"
        cloud = self.server.cloud
        cloud.stats.record_request(
            stats.RequestRecord(
                time=format_time(cloud.clock()),
                method=request.method,
                host=request.header("host") or "",
                path=request.path,
                query=request.raw_query,
                endpoint=endpoint,
                tenant=tenant,
                status=status,
                authorization=kind,
            )
        )

    def _finish(
        self, request: Request, endpoint: str, response: Response, *, truncate: bool = False
    ) -> None:
        self._record(request, endpoint, response.tenant, response.status)
        logger.debug("%s %s -> %s (%s)", request.method, request.path, response.status, endpoint)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.wfile.flush()
            self._reset_connection()
            return
        self.wfile.write(response.body)

    def _reset_connection(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) and no further bytes."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()


def _with_tenant(response: Response, tenant: str | None) -> Response:
    return Response(response.status, response.body, response.headers, response.content_type, tenant)


def dumps_settings(settings: Mapping[str, str]) -> str:
    """`export NAME=value` lines, shell-quoted."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
