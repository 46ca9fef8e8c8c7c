"""What a route of the HTTP API is, as data: its parameters, body, role and OpenAPI metadata.

``shared.api.routes`` holds the table of routes and the dispatcher; ``shared.api.openapi``
describes a table. Both read these types, so neither imports the other's module to know them.
A route's name, method, path, summary and who may call it are its ``Endpoint``
(``shared.api.endpoints``, what the Functions host indexes); a ``Route`` adds the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.api.endpoints import AuthLevel, Endpoint
from shared.api.http import Response
from shared.api.schema import Body

if TYPE_CHECKING:
    from shared.api.handlers import Context


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter. ``title`` is the name a connector shows
    (``x-ms-summary``); ``enum`` lists the values of a string, or of an array's items."""

    name: str
    where: Literal["query", "path", "header"]
    kind: Literal["string", "integer", "array"]
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    fmt: str | None = None
    visibility: str | None = None
    default: Any = None
    title: str | None = None


@dataclass(frozen=True)
class Route:
    """One operation of the API: its ``endpoint`` and how it is served and described."""

    endpoint: Endpoint
    handler: Callable[[Context], Response]
    description: str
    role: str | None = None
    params: tuple[Param, ...] = ()
    body: Body | None = None
    body_types: tuple[str, ...] = ("application/json",)
    body_optional: bool = False
    #: a body without ``Content-Type`` is read too (Logic Apps' unsubscribe may drop it)
    body_untyped: bool = False
    responses: Mapping[int, tuple[str, str | None]] = field(default_factory=dict)
    produces: tuple[str, ...] = ("application/json",)
    visibility: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)
    #: extensions of the path item (``x-ms-notification-content`` belongs there, not on the
    #: operation: Power Platform's swagger schema)
    path_extensions: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    #: backend needed (False: health works even with broken settings)
    needs_backend: bool = True
    #: the per-caller limit family of a route that calls Defender (``shared.api.ratelimit``)
    limit: str | None = None

    @property
    def operation_id(self) -> str:
        """The operation's name (OpenAPI ``operationId``)."""
        return self.endpoint.operation_id

    @property
    def method(self) -> str:
        """The HTTP method."""
        return self.endpoint.method

    @property
    def path(self) -> str:
        """The path below ``/api`` (``{id}`` names a segment)."""
        return self.endpoint.path

    @property
    def summary(self) -> str:
        """The operation's one-line summary."""
        return self.endpoint.summary

    @property
    def auth(self) -> AuthLevel:
        """Who may call (``shared.api.endpoints.AuthLevel``)."""
        return self.endpoint.auth

    @property
    def public(self) -> bool:
        """Reachable without a token or a key (``Endpoint.public``)."""
        return self.endpoint.public

    @property
    def pattern(self) -> re.Pattern[str]:
        """The path as a regular expression (``{id}`` matches one segment)."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path)
        return re.compile(f"^{regex}/?$")

    @property
    def function_name(self) -> str:
        """The Functions function name of this route."""
        return self.endpoint.function_name

    @property
    def function_route(self) -> str:
        """The Functions route template (below the ``api`` prefix)."""
        return self.endpoint.function_route
