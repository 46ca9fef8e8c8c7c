"""The OpenAPI 2.0 document of the API, generated from the route table.

Importable as a Logic Apps / Power Automate custom connector
(https://learn.microsoft.com/connectors/custom-connectors/openapi-extensions): unique
``operationId`` and ``summary`` on every operation, ``x-ms-visibility``, ``x-ms-trigger: single``
on the subscribe operation whose body has the callback URL as an internal property marked
``x-ms-notification-url``, ``x-ms-notification-content`` describing what each delivery POSTs,
``x-ms-pageable`` on the listing. Security: OAuth 2.0 with Microsoft Entra ID (authorization
code flow against the home tenant, scope ``<Application ID URI>/.default``), what a custom
connector with the Entra ID identity provider uses
(https://learn.microsoft.com/connectors/custom-connectors/azure-active-directory-authentication);
with ``API_AUTH_MODE=key`` the function key in the ``x-functions-key`` header instead. ``host``
is the host the document was fetched from, so it is right for whichever deployment serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.api.routes import ROUTES, Param, Route
from shared.usecases import INCIDENT_COLUMNS

VERSION = "1.0.0"
ERROR_REF = {"$ref": "#/definitions/Error"}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


_INCIDENT_PROPS: dict[str, Any] = {
    "id": _string("incident id"),
    "title": _string("title"),
    "status": _string("active, inProgress, resolved, redirected, awaitingAction"),
    "severity": _string("informational, low, medium, high, unknown"),
    "classification": _string("classification", **{"x-nullable": True}),
    "determination": _string("determination", **{"x-nullable": True}),
    "assignedTo": _string("assignee", **{"x-nullable": True}),
    "created": _string("created (UTC)", format="date-time"),
    "lastUpdate": _string("last updated (UTC)", format="date-time"),
    "redirectId": _string("merged into this incident", **{"x-nullable": True}),
    "tags": {"type": "array", "items": {"type": "string"}, "description": "tags"},
    "alerts": {"type": "integer", "format": "int32", "description": "number of alerts"},
    "api": _string("the API surface that served it (graph or legacy)"),
}
assert tuple(_INCIDENT_PROPS) == INCIDENT_COLUMNS

_ALERT_PROPS = {
    name: _string(name, **{"x-nullable": True})
    for name in (
        "id",
        "incidentId",
        "title",
        "status",
        "severity",
        "category",
        "serviceSource",
        "detectionSource",
        "created",
        "lastUpdate",
        "api",
    )
}

DEFINITIONS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": _string("stable error code"), "message": _string("why")},
            }
        },
    },
    "Health": {"type": "object", "properties": {"status": _string("ok")}},
    "Incident": {"type": "object", "properties": _INCIDENT_PROPS},
    "Alert": {"type": "object", "properties": _ALERT_PROPS},
    "IncidentWithAlerts": {
        "type": "object",
        "properties": {
            **_INCIDENT_PROPS,
            "alertList": {"type": "array", "items": {"$ref": "#/definitions/Alert"}},
        },
    },
    "IncidentPage": {
        "type": "object",
        "properties": {
            "tenant": _string("the tenant"),
            "value": {"type": "array", "items": {"$ref": "#/definitions/Incident"}},
            "nextLink": _string("the next page (absent on the last)", format="uri"),
        },
    },
    "HuntingResult": {
        "type": "object",
        "properties": {
            "columns": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": _string("column"), "type": _string("KQL type")},
                },
            },
            "rows": {"type": "array", "items": {"type": "object"}},
            "rowCount": {"type": "integer", "format": "int32"},
            "truncated": {
                "type": "boolean",
                "description": "rows were cut by maxRows or by the service's 100,000-row limit",
            },
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": _string("job id"),
            "state": _string("queued or running"),
            "tenant": _string("tenant"),
        },
    },
    "TemplateList": {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"type": "object"}}},
    },
    "IngestQueued": {
        "type": "object",
        "properties": {
            "queued": {"type": "boolean"},
            "tenant": _string("tenant"),
            "since": _string("backfill start", **{"x-nullable": True}),
        },
    },
    "SubscriptionCreated": {
        "type": "object",
        "properties": {
            "id": _string("subscription id"),
            "secret": _string("HMAC-SHA256 key of X-Defender-Signature"),
            "signatureHeader": _string("the signature header's name"),
            "host": _string("the callback's host (the URL itself is never shown)"),
            "status": _string("active, or dropped after the receiver was gone"),
            "minSeverity": _string("filter", **{"x-nullable": True}),
            "statuses": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "tenants": {"type": "array", "items": {"type": "string"}, "x-nullable": True},
            "created": _string("when", format="date-time"),
        },
    },
    "Deleted": {"type": "object", "properties": {"deleted": {"type": "integer"}}},
    "SubscriptionList": {
        "type": "object",
        "properties": {
            "value": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": _string("subscription id"),
                        "host": _string("the callback's host"),
                        "status": _string("active or dropped"),
                        "breaker": _string("open (deliveries wait) or closed"),
                        "lastSuccess": _string("last delivery", **{"x-nullable": True}),
                        "lastError": _string("last failure's reason", **{"x-nullable": True}),
                        "dropReason": _string("why it was dropped", **{"x-nullable": True}),
                        "location": _string("the URL to DELETE to unsubscribe"),
                    },
                },
            }
        },
    },
    "ConsentRecorded": {
        "type": "object",
        "properties": {
            "tenant": _string("tenant"),
            "consented": {"type": "boolean"},
            "message": _string("what happens next"),
        },
    },
    "IncidentNotification": {
        "type": "object",
        "properties": {
            "event": _string(
                "created (new to the bridge's store) or updated", enum=["created", "updated"]
            ),
            "tenant": _string("tenant"),
            "delivery": _string("delivery id (also X-Defender-Delivery): deduplicate on it"),
            "incident": {"$ref": "#/definitions/Incident"},
        },
    },
}


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "type": param.kind,
    }
    if param.kind == "array":
        out["items"] = {"type": "string"}
        out["collectionFormat"] = "csv"
    if param.enum:
        out["enum"] = list(param.enum)
    if param.minimum is not None:
        out["minimum"] = param.minimum
    if param.maximum is not None:
        out["maximum"] = param.maximum
    if param.fmt:
        out["format"] = param.fmt
    if param.default is not None:
        out["default"] = param.default
    if param.visibility:
        out["x-ms-visibility"] = param.visibility
    out["x-ms-summary"] = param.name
    return out


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": route.description
        + (f" Needs the app role {route.role}." if route.role else ""),
        "tags": list(route.tags),
        "produces": list(route.produces),
        "parameters": [_parameter(p) for p in route.params],
        "responses": {},
    }
    if route.body is not None:
        op["consumes"] = list(route.body_types)
        op["parameters"].append(
            {
                "name": "body",
                "in": "body",
                "required": not route.body_optional,
                "schema": route.body.openapi(),
            }
        )
    for status, (description, ref) in sorted(route.responses.items()):
        entry: dict[str, Any] = {"description": description}
        if ref is not None:
            entry["schema"] = {"$ref": f"#/definitions/{ref}"}
        if status in (201, 202):
            entry["headers"] = {"Location": {"type": "string", "description": "absolute URL"}}
            if status == 202:
                entry["headers"]["Retry-After"] = {"type": "integer", "description": "seconds"}
        op["responses"][str(status)] = entry
    if route.auth != "anonymous":
        op["responses"]["401"] = {
            "description": "no valid Entra ID access token for this API (WWW-Authenticate says "
            "why)",
            "schema": ERROR_REF,
        }
    op["responses"].setdefault("default", {"description": "error", "schema": ERROR_REF})
    if route.visibility:
        op["x-ms-visibility"] = route.visibility
    if route.auth == "anonymous":
        op["security"] = []
    op.update(route.extensions)
    return op


@dataclass(frozen=True)
class Security:
    """How callers authenticate, for the document's security definitions."""

    authority_url: str = "https://login.microsoftonline.com"
    tenant: str = "organizations"
    audience: str = "api://defender-bridge"
    key_mode: bool = False

    def definitions(self) -> dict[str, Any]:
        """``securityDefinitions``: Entra ID (OAuth 2.0) and the function key."""
        base = f"{self.authority_url.rstrip('/')}/{self.tenant}/oauth2/v2.0"
        return {
            "entraId": {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": f"{base}/authorize",
                "tokenUrl": f"{base}/token",
                "scopes": {self.scope: "the app roles assigned to you on Defender Bridge"},
                "description": f"Microsoft Entra ID: an access token for {self.audience} "
                "(custom connector: identity provider Microsoft Entra ID, resource URL "
                f"{self.audience}); apps and managed identities get one for {self.scope}",
            },
            "functionKey": {
                "type": "apiKey",
                "in": "header",
                "name": "x-functions-key",
                "description": "a function key of the app (or ?code=): accepted alone only "
                "when the app runs with API_AUTH_MODE=key",
            },
        }

    @property
    def scope(self) -> str:
        """The scope a client asks Entra for."""
        return f"{self.audience}/.default"

    def requirement(self) -> list[dict[str, list[str]]]:
        """The document-wide ``security``: what this deployment accepts."""
        if self.key_mode:
            return [{"functionKey": []}]
        return [{"entraId": [self.scope]}]


def document(base_url: str, security: Security | None = None) -> dict[str, Any]:
    """The document for the deployment at ``base_url`` (``scheme://host``)."""
    security = security or Security()
    parts = urlsplit(base_url)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "swagger": "2.0",
        "info": {
            "title": "Defender Bridge",
            "version": VERSION,
            "description": "Microsoft Defender XDR incidents, advanced hunting and push "
            "notifications for Logic Apps, Power Automate and webhooks, across tenants.",
        },
        "host": parts.netloc or "localhost",
        "basePath": "/api",
        "schemes": [parts.scheme if parts.scheme in ("http", "https") else "https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": security.definitions(),
        "security": security.requirement(),
        "paths": paths,
        "definitions": DEFINITIONS,
    }
