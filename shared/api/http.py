"""Framework-free HTTP request and response values, and the API's JSON error. Pure.

Every error the API answers is ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx
status; ``ApiError`` carries one from wherever it is raised to the dispatcher.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class Headers:
    """Case-insensitive, single-valued header mapping (the last value of a repeated header)."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for key, value in (items or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        self._items[key.lower()] = (key, value)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The header's value, or ``default``."""
        found = self._items.get(key.lower())
        return found[1] if found else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs with the names as given."""
        return list(self._items.values())


@dataclass(frozen=True)
class Request:
    """One HTTP request as a route handler sees it.

    ``path`` is below ``/api`` (e.g. ``/incidents/42``); ``query`` keeps repeated parameters;
    ``base_url`` is ``scheme://host`` of the deployment, for absolute ``Location`` headers.
    """

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    base_url: str = "http://localhost"
    route_params: Mapping[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """A query parameter given once (a repeated one is a 400)."""
        values = self.query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(400, "invalid_parameter", f"query parameter '{name}' is repeated")
        return values[0]

    def params(self, name: str) -> list[str]:
        """Every value of a repeatable query parameter, commas split too (``a,b`` = ``a&b``)."""
        return [p.strip() for v in self.query.get(name, []) for p in v.split(",") if p.strip()]


@dataclass(frozen=True)
class Response:
    """An HTTP response: status, headers and body bytes."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header, if any."""
        return next((v for k, v in self.headers.items() if k.lower() == "content-type"), None)

    def json(self) -> Any:
        """The body parsed as JSON (tests and adapters)."""
        return json.loads(self.body)


JSON = "application/json; charset=utf-8"


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response."""
    body = json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")
    return Response(status, body, {"Content-Type": JSON, **(headers or {})})


class ApiError(Exception):
    """An error answer: ``status``, a stable ``code`` and a message safe to show the caller."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The JSON error response."""
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """``{"error": {"code", "message"}}`` with ``status``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL (``http://localhost`` if it has none)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "http://localhost"
    return f"{parts.scheme}://{parts.netloc}"
