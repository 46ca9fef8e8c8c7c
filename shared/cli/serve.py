"""``python -m shared serve``: the HTTP API on localhost, without the Functions host.

The same routes as the Functions HTTP triggers (``shared.api.routes``), served by the standard
library's WSGI server with one thread per request. Hunting jobs run on this process's threads
instead of the ``defender-hunting`` queue. Only loopback addresses are accepted: this is for
trying the API, not for exposing it (there are no function keys here).
"""

from __future__ import annotations

import argparse
import socketserver
import sys
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from shared.cli.common import EXIT_OK, EXIT_USAGE

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request (a slow hunt does not block a poll)."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # the path only: a query string may carry a function key or a callback's sig
        sys.stderr.write(f"{self.command} {self.path.split('?')[0]} {code}\n")


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


def build_server(host: str, port: int) -> ThreadingWSGIServer:
    """The server (not yet serving); port 0 picks a free one."""
    from shared.api.app import answer
    from shared.api.wsgi import make_app

    app = make_app(lambda request: answer(request, in_process=True))
    server = make_server(
        host, port, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
    )
    assert isinstance(server, ThreadingWSGIServer)
    return server


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Serve until interrupted."""
    if args.host not in LOOPBACK:
        print("error: python -m shared serve: --host must be a loopback address", file=sys.stderr)
        return EXIT_USAGE
    server = build_server(args.host, args.port)
    out.write(f"serving the HTTP API on http://{args.host}:{server.server_port}/api/\n")
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK
