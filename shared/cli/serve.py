"""``python -m shared serve``: the HTTP API on localhost, without the Functions host.

The same routes as the Functions HTTP triggers (``shared.api.routes``), served by the standard
library's WSGI server with one thread per request. Hunting jobs run on this process's threads
instead of the ``defender-hunting`` queue. This is for trying the API, not for exposing it, and a
local port is reachable by every web page the developer opens, so before a request reaches the
routes (``guard``):

- its ``Host`` must be a loopback name with this port (a page on a name that resolves to
  127.0.0.1, DNS rebinding, sends its own);
- it must carry no ``Origin`` and no cross-site ``Sec-Fetch-Site`` (browsers add them to a
  page's requests), and a body only as ``application/json`` (``text/plain``, form and
  multipart bodies are what a page can send without a CORS preflight);
- it must carry this run's key, printed at start, as ``x-functions-key`` or ``?code=``: the
  role the function key plays under the Functions host (not needed by the public routes: the
  health check, the consent callback and the poll link, which carries its own capability).

The routes then authenticate the caller as under Functions: an Entra ID token in the default
``API_AUTH_MODE=entra``; the key alone with ``API_AUTH_MODE=key``.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import socketserver
import sys
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from shared.api.access import KEY_HEADER, KEY_PARAMETER
from shared.api.http import ApiError, Request, Response
from shared.api.routes import match
from shared.api.wsgi import make_app
from shared.cli.common import EXIT_OK, EXIT_USAGE

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Host header names of a loopback address
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request (a slow hunt does not block a poll)."""

    daemon_threads = True
    #: this run's key (``guard``)
    key: str = ""


class _QuietHandler(WSGIRequestHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        # wsgiref fills in "text/plain" for a request that sent no Content-Type; the guard must
        # see what the client sent (a Logic App's unsubscribe DELETE carries none)
        if self.headers.get("Content-Type") is None:
            environ.pop("CONTENT_TYPE", None)
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # the path only: a query string may carry a function key or a callback's sig; a request
        # line too malformed to parse leaves no command or path
        path = (getattr(self, "path", None) or "-").split("?")[0]
        sys.stderr.write(f"{getattr(self, 'command', None) or '-'} {path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        # never the base's text: for a malformed request it quotes the whole request line,
        # query string (a run key, a poll link's sig) included
        sys.stderr.write("a request could not be read (malformed or timed out)\n")


def register(commands: Any) -> None:
    """Add the ``serve`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="serve the HTTP API on localhost",
        description="Serve the HTTP API (the Functions HTTP routes) on a loopback address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="port (default 7071)")
    parser.set_defaults(handler=run)


def build_server(host: str, port: int, *, key: str | None = None) -> ThreadingWSGIServer:
    """The server (not yet serving); port 0 picks a free one. ``key``: the run's key (default:
    a new random one, ``server.key``)."""

    # import cost: the HTTP API's wiring imports the composition root, which loads every SDK;
    # only a server that is about to run needs it (not ``--help``)
    from shared.api.app import answer

    run_key = key or secrets.token_urlsafe(32)
    bound: dict[str, int] = {}

    def guarded(request: Request) -> Response:
        refused = guard(request, key=run_key, port=bound["port"])
        return refused if refused is not None else answer(request, in_process=True)

    server = make_server(
        host, port, make_app(guarded), server_class=ThreadingWSGIServer, handler_class=_QuietHandler
    )
    assert isinstance(server, ThreadingWSGIServer)
    bound["port"] = server.server_port
    server.key = run_key
    return server


def guard(request: Request, *, key: str, port: int) -> Response | None:
    """The refusal of a request ``serve`` must not answer, or None (see the module docstring).
    Pure."""

    try:
        _check(request, key=key, port=port, anonymous=_anonymous(match, request))
    except ApiError as exc:
        return exc.response()
    return None


def _anonymous(match: Any, request: Request) -> bool:
    path = request.path.removeprefix("/api") or "/"
    try:
        route, _ = match(request.method, path)
    except ApiError:
        return False  # not a route: the key is still asked for first
    return bool(route.public)


def _check(request: Request, *, key: str, port: int, anonymous: bool) -> None:
    if not _loopback(request.headers.get("Host"), port):
        raise ApiError(
            403,
            "host_not_allowed",
            f"serve answers requests for 127.0.0.1:{port} or localhost:{port} only",
        )
    site = (request.headers.get("Sec-Fetch-Site") or "").lower()
    if request.headers.get("Origin") is not None or site in ("cross-site", "same-site"):
        raise ApiError(403, "cross_origin", "serve refuses requests made by web pages")
    sent = request.headers.get("Content-Type")
    kind = (sent or "").split(";")[0].strip().lower()
    # a web page can POST text, forms and untyped bytes without a CORS preflight; a DELETE is
    # always preflighted (which serve never grants), so an untyped DELETE body is a client's
    # own (a Logic App's unsubscribe call sends its body without Content-Type)
    untyped_delete = sent is None and request.method.upper() == "DELETE"
    if request.body and kind != "application/json" and not untyped_delete:
        raise ApiError(415, "unsupported_media_type", "serve accepts JSON bodies only")
    if anonymous:
        return
    given = [request.headers.get(KEY_HEADER) or "", *request.query.get(KEY_PARAMETER, [])]
    if not any(hmac.compare_digest(g.encode(), key.encode()) for g in given if g):
        raise ApiError(
            401,
            "serve_key_required",
            "send the key 'python -m shared serve' printed at start, as the x-functions-key "
            "header or the code query parameter",
            {"WWW-Authenticate": 'Key realm="python -m shared serve"'},
        )


def _loopback(value: str | None, port: int) -> bool:
    """Whether a ``Host`` header names a loopback address (and this port, if any)."""
    if not value:
        return False
    name, port_text = value.strip().lower(), ""
    if not name.endswith("]") and ":" in name:
        name, _, port_text = name.rpartition(":")
    return name in _LOOPBACK_HOSTS and port_text in ("", str(port))


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Serve until interrupted."""
    if args.host not in LOOPBACK:
        print("error: python -m shared serve: --host must be a loopback address", file=sys.stderr)
        return EXIT_USAGE
    server = build_server(args.host, args.port)
    out.write(f"serving the HTTP API on http://{args.host}:{server.server_port}/api/\n")
    out.write(
        f"key of this run: {server.key}\n"
        "  send it as the x-functions-key header (or ?code=) on every route but the public\n"
        "  ones (/api/health, /api/consent/callback, a hunting job's poll link),\n"
        "  with an Entra ID token for the API as 'Authorization: Bearer <token>' (the emulator\n"
        "  mints one: POST /_emulator/api/token), unless API_AUTH_MODE=key\n"
    )
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK
