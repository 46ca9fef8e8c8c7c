"""The routes of the HTTP API as the Functions host indexes them: name, method, path, who may
call, summary. Nothing else, and nothing imported but the standard library.

``function_app.py`` registers one HTTP function per entry at import, where the host indexes the
app and import time counts; the handlers, use cases and OpenAPI metadata of each route are
joined to its entry in ``shared.api.routes``, which the HTTP functions import on first
invocation. Each route is written once: its entry here, the rest there (``routes.joined``
refuses a table where an entry has no route, or two).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: ``function``: the caller must prove who they are (``shared.api.access``); ``capability``: a
#: token if the caller sends one (it is validated and decides), else the request's own signed
#: capability, checked by the handler (a poll link: ``shared.api.poll``)
AuthLevel = Literal["function", "anonymous", "capability"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the Functions host needs to know of one route: ``operation_id`` names it (and its
    function), ``path`` is below ``/api``."""

    operation_id: str
    method: str
    path: str
    summary: str
    auth: AuthLevel = "function"

    @property
    def public(self) -> bool:
        """Reachable without a token or a key: anonymous at the Functions host, excluded from
        App Service Authentication (``infra/app/auth.bicep``), no run key under ``serve``."""
        return self.auth in ("anonymous", "capability")

    @property
    def function_name(self) -> str:
        """The Functions function name of this route."""
        return "http_" + re.sub(r"(?<!^)(?=[A-Z])", "_", self.operation_id).lower()

    @property
    def function_route(self) -> str:
        """The Functions route template (below the ``api`` prefix)."""
        return self.path.lstrip("/")


#: every route, in the order ``shared.api.routes.match`` tries them
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("Health", "GET", "/health", "Health check", auth="anonymous"),
    Endpoint("ListIncidents", "GET", "/incidents", "List incidents"),
    Endpoint("GetIncident", "GET", "/incidents/{id}", "Get an incident"),
    Endpoint("UpdateIncident", "PATCH", "/incidents/{id}", "Update an incident"),
    Endpoint("ListHuntingTemplates", "GET", "/hunting/templates", "List hunting templates"),
    Endpoint("RunHunting", "POST", "/hunting", "Run a hunting query"),
    Endpoint("GetHuntingJob", "GET", "/hunting/jobs/{id}", "Get a hunting job"),
    Endpoint("PollHuntingJob", "GET", "/hunting/status", "Poll a hunting job", auth="capability"),
    Endpoint("QueueIngestion", "POST", "/ingest", "Ingest a tenant now"),
    Endpoint("GetIngestionStatus", "GET", "/ingest/status", "Get a tenant's ingestion status"),
    Endpoint(
        "SubscribeIncidents", "POST", "/subscriptions", "When an incident is created or updated"
    ),
    Endpoint("ListSubscriptions", "GET", "/subscriptions", "List subscriptions"),
    Endpoint("UnsubscribeByCallback", "DELETE", "/subscriptions", "Unsubscribe a callback URL"),
    Endpoint("Unsubscribe", "DELETE", "/subscriptions/{id}", "Unsubscribe"),
    Endpoint(
        "ConsentCallback", "GET", "/consent/callback", "Admin consent callback", auth="anonymous"
    ),
    Endpoint("GetOpenApi", "GET", "/openapi.json", "OpenAPI document"),
)

#: the entries by operation id
ENDPOINT: dict[str, Endpoint] = {e.operation_id: e for e in ENDPOINTS}
