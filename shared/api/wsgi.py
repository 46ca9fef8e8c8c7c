"""The HTTP API as a WSGI application (``python -m shared serve``, tests, schemathesis)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from shared.api.http import Headers, Request, Response

Answer = Callable[[Request], Response]
#: read at most this much of a body; the dispatcher refuses anything above its own limit
READ_LIMIT = 1_048_577


def to_request(environ: dict[str, Any]) -> Request:
    """A ``Request`` from a WSGI environ."""
    headers = Headers()
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").title()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = environ[key]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(min(max(length, 0), READ_LIMIT)) if length > 0 else b""
    # PEP 3333: PATH_INFO arrives as latin-1 decoded bytes
    path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    return Request(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=path,
        query=query,
        headers=headers,
        body=body,
        base_url=f"{environ.get('wsgi.url_scheme', 'http')}://{host}",
    )


def make_app(answer: Answer) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI application answering with ``answer``."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = answer(to_request(environ))
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Status"
        headers = [(k, v) for k, v in response.headers.items()]
        headers.append(("Content-Length", str(len(response.body))))
        headers.append(("X-Content-Type-Options", "nosniff"))
        start_response(f"{response.status} {reason}", headers)
        return [response.body]

    return application
