"""Adapters between Azure Functions HTTP types and the API's own ``Request``/``Response``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from shared.api.http import Headers, Request, Response, origin


def to_request(req: func.HttpRequest) -> Request:
    """A ``Request`` from a Functions HTTP request (repeated query parameters kept)."""
    parts = urlsplit(req.url)
    query = parse_qs(parts.query, keep_blank_values=True)
    for key, value in req.params.items():
        query.setdefault(key, [value])
    return Request(
        method=req.method.upper(),
        path=parts.path or "/",
        query=query,
        headers=Headers(dict(req.headers.items())),
        body=req.get_body() or b"",
        base_url=origin(req.url),
        route_params=dict(req.route_params),
    )


def to_response(response: Response) -> func.HttpResponse:
    """A Functions HTTP response."""
    headers = dict(response.headers)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    return func.HttpResponse(body=response.body, status_code=response.status, headers=headers)
