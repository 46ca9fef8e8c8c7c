"""Request and response values passed between the HTTP server and the service handlers.

Handlers are plain functions from `Request` to `Response`, so they can be tested without sockets
and the server module stays the only place that touches the network.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the handlers see it (header names lower-cased)."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    raw_query: str = ""

    def param(self, name: str) -> str | None:
        """First value of a query parameter, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name, or None."""
        return self.headers.get(name.lower())

    def form(self) -> dict[str, str]:
        """The body as `application/x-www-form-urlencoded` (first value of each field)."""
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def json_body(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True, slots=True)
class Response:
    """A response plus what the server records about it (the request's tenant)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json; charset=utf-8"
    tenant: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def json_response(
    status: int,
    payload: Any,
    *,
    headers: Sequence[tuple[str, str]] = (),
    tenant: str | None = None,
) -> Response:
    """A JSON response (compact separators, UTF-8)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, tuple(headers), tenant=tenant)


def new_request_id() -> str:
    """A fresh tracking GUID (`target` of legacy errors, `request-id` of Graph errors)."""
    return str(uuid.uuid4())
