"""The OpenAPI 2.0 document of the API, generated from the route table: a Power Platform connector.

Importable as a Logic Apps / Power Automate custom connector and valid against the rules of Power
Platform's swagger schema and certification checklist (``tests/api/connector_rules.py`` encodes
them; docs/logic-apps.md names the sources): unique PascalCase ``operationId``, a summary and a
description on every operation, ``x-ms-summary`` titles and descriptions on every parameter and
body property and titles on response properties, explicit success and error responses (no
``default``), ``x-ms-visibility``, ``x-ms-trigger: single`` on the subscribe operation whose
body has the callback URL as an internal property marked ``x-ms-notification-url``, the
trigger's outputs as ``x-ms-notification-content`` on its path item (what each delivery POSTs),
``x-ms-pageable`` with ``nextLinkName`` on the listing, ``info.contact``, and one security
definition: OAuth 2.0 with Microsoft Entra ID (authorization code flow against the home tenant,
scope ``<Application ID URI>/.default``), what a custom connector with the Entra ID identity
provider uses (https://learn.microsoft.com/connectors/custom-connectors/azure-active-directory-authentication),
or with ``API_AUTH_MODE=key`` the function key in the ``x-functions-key`` header. ``host`` is
the host the document was fetched from, so it is right for whichever deployment serves it.
The connector's other half, ``apiProperties.json``, comes from ``shared.api.connector``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.api.schema import title_of
from shared.api.spec import Param, Route
from shared.usecases.incidents import INCIDENT_COLUMNS

VERSION = "1.0.0"
TITLE = "Defender Bridge"
ERROR_REF = {"$ref": "#/definitions/Error"}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _titled(title: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"x-ms-summary": title, **schema}


_INCIDENT_PROPS: dict[str, Any] = {
    "id": _titled("Incident ID", _string("The incident's ID.")),
    "title": _titled("Incident Title", _string("The incident's title.")),
    "status": _titled(
        "Status", _string("active, inProgress, resolved, redirected or awaitingAction.")
    ),
    "severity": _titled("Severity", _string("informational, low, medium, high or unknown.")),
    "classification": _titled(
        "Classification", _string("How the incident was classified.", **{"x-nullable": True})
    ),
    "determination": _titled(
        "Determination", _string("What the incident was found to be.", **{"x-nullable": True})
    ),
    "assignedTo": _titled(
        "Assigned To", _string("Who the incident is assigned to.", **{"x-nullable": True})
    ),
    "created": _titled("Created", _string("When it was created (UTC).", format="date-time")),
    "lastUpdate": _titled(
        "Last Updated", _string("When it was last updated (UTC).", format="date-time")
    ),
    "redirectId": _titled(
        "Merged Into", _string("The incident it was merged into.", **{"x-nullable": True})
    ),
    "tags": _titled(
        "Tags", {"type": "array", "items": {"type": "string"}, "description": "Its tags."}
    ),
    "alerts": _titled(
        "Alert Count",
        {"type": "integer", "format": "int32", "description": "How many alerts it holds."},
    ),
    "api": _titled(
        "Defender Surface", _string("The API surface that served it (graph or legacy).")
    ),
}
assert tuple(_INCIDENT_PROPS) == INCIDENT_COLUMNS

_ALERT_PROPS = {
    name: _string(f"The alert's {title_of(name).lower()}.", **{"x-nullable": True})
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
                "properties": {
                    "code": _string("A stable error code."),
                    "message": _string("What went wrong, and what to do about it."),
                },
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
            "alertList": _titled(
                "Alerts",
                {
                    "type": "array",
                    "items": {"$ref": "#/definitions/Alert"},
                    "description": "The incident's alerts.",
                },
            ),
        },
    },
    "IncidentPage": {
        "type": "object",
        "properties": {
            "tenant": _titled("Tenant ID", _string("The tenant listed.")),
            "value": _titled(
                "Incidents",
                {
                    "type": "array",
                    "items": {"$ref": "#/definitions/Incident"},
                    "description": "This page's incidents, newest first.",
                },
            ),
            "nextLink": _titled(
                "Next Page", _string("The next page (absent on the last).", format="uri")
            ),
        },
    },
    "HuntingResult": {
        "type": "object",
        "properties": {
            "columns": {
                "type": "array",
                "description": "The result's columns.",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": _string("The column's name."),
                        "type": _string("The column's KQL type."),
                    },
                },
            },
            "rows": {
                "type": "array",
                "items": {"type": "object"},
                "description": "The rows, one object per row.",
            },
            "rowCount": {"type": "integer", "format": "int32", "description": "How many rows."},
            "truncated": {
                "type": "boolean",
                "description": "Rows were cut by maxRows or by the service's 100,000-row limit.",
            },
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": _titled("Job ID", _string("The job's ID.")),
            "state": _string("queued or running.", enum=["queued", "running"]),
            "tenant": _titled("Tenant ID", _string("The tenant it runs in.")),
        },
    },
    "TemplateList": {
        "type": "object",
        "properties": {
            "value": {
                "type": "array",
                "items": {"type": "object"},
                "description": "The hunting templates.",
            }
        },
    },
    "IngestQueued": {
        "type": "object",
        "properties": {
            "queued": {"type": "boolean", "description": "The request was accepted."},
            "tenant": _titled("Tenant ID", _string("The tenant to ingest.")),
            "since": _titled(
                "Backfill From", _string("Where a backfill starts.", **{"x-nullable": True})
            ),
        },
    },
    "IngestStatus": {
        "type": "object",
        "properties": {
            "tenant": _titled("Tenant ID", _string("The tenant.")),
            "state": _string(
                "queued or running (202), else idle, held or poison (200).",
                enum=["queued", "running", "idle", "held", "poison"],
            ),
            "health": _string("ok, never_run, throttled, consent_required, failing, ..."),
            "lastResult": _string("The last run's outcome.", **{"x-nullable": True}),
            "lastSuccess": _string(
                "When a run last completed.", format="date-time", **{"x-nullable": True}
            ),
            "lagSeconds": {
                "type": "number",
                "description": "Seconds since the last success.",
                "x-nullable": True,
            },
            "watermark": _string("Where the next run starts.", **{"x-nullable": True}),
            "lastError": _string("The last failure.", **{"x-nullable": True}),
            "lastErrorCode": _string("Its code.", **{"x-nullable": True}),
            "holdUntil": _string(
                "Held back until then.", format="date-time", **{"x-nullable": True}
            ),
        },
    },
    "SubscriptionCreated": {
        "type": "object",
        "properties": {
            "id": _titled("Subscription ID", _string("The subscription's ID.")),
            "secret": _string("HMAC-SHA256 key of X-Defender-Signature (shown once)."),
            "signatureHeader": _string("The signature header's name."),
            "host": _string("The callback's host (the URL itself is never shown)."),
            "status": _string("active, or dropped after the receiver was gone."),
            "minSeverity": _titled(
                "Minimum Severity", _string("The filter's severity.", **{"x-nullable": True})
            ),
            "statuses": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The filter's statuses.",
            },
            "tags": {"type": "array", "items": {"type": "string"}, "description": "The tags."},
            "tenants": {
                "type": "array",
                "items": {"type": "string"},
                "x-nullable": True,
                "description": "The tenants it covers.",
            },
            "created": _string("When it was made.", format="date-time"),
        },
    },
    "Deleted": {
        "type": "object",
        "properties": {"deleted": {"type": "integer", "description": "How many were removed."}},
    },
    "SubscriptionList": {
        "type": "object",
        "properties": {
            "value": {
                "type": "array",
                "description": "The subscriptions.",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": _titled("Subscription ID", _string("The subscription's ID.")),
                        "host": _string("The callback's host."),
                        "status": _string("active or dropped."),
                        "breaker": _string("open (deliveries wait) or closed."),
                        "lastSuccess": _string("The last delivery.", **{"x-nullable": True}),
                        "lastError": _string("The last failure's reason.", **{"x-nullable": True}),
                        "dropReason": _string("Why it was dropped.", **{"x-nullable": True}),
                        "location": _string("The URL to DELETE to unsubscribe."),
                    },
                },
            }
        },
    },
    "ConsentRecorded": {
        "type": "object",
        "properties": {
            "tenant": _titled("Tenant ID", _string("The consenting tenant.")),
            "consented": {"type": "boolean", "description": "The consent was recorded."},
            "message": _string("What happens next."),
        },
    },
    # what push POSTs to a subscription's callback (the trigger's outputs)
    "IncidentNotification": {
        "type": "object",
        "required": ["event", "tenant", "incident"],
        "properties": {
            "event": _titled(
                "Event",
                _string(
                    "created (new to the bridge's store) or updated.",
                    enum=["created", "updated"],
                ),
            ),
            "tenant": _titled("Tenant ID", _string("The incident's tenant.")),
            "delivery": _titled(
                "Delivery ID",
                _string("The delivery's ID (also X-Defender-Delivery): deduplicate on it."),
            ),
            "incident": {"$ref": "#/definitions/Incident"},
        },
    },
}


def _with_titles(schema: Any, name: str | None = None) -> Any:
    """``schema`` with an ``x-ms-summary`` on every property that has none (``title_of`` its
    name): the titles Logic Apps shows for a step's outputs."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if name is not None and "$ref" not in out:
        out.setdefault("x-ms-summary", title_of(name))
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _with_titles(v, k) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _with_titles(out[key])
    return out


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "x-ms-summary": param.title or title_of(param.name),
        "description": param.description,
        "type": param.kind,
    }
    if param.kind == "array":
        out["items"] = {"type": "string"}
        if param.enum:
            out["items"]["enum"] = list(param.enum)
        out["collectionFormat"] = "csv"
    elif param.enum:
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
    return out


def _body(route: Route) -> dict[str, Any]:
    assert route.body is not None
    title = route.body.title or title_of(route.body.name)
    return {
        "name": "body",
        "in": "body",
        "required": not route.body_optional,
        "x-ms-summary": title,
        "description": route.body.description or f"The {title.lower()}.",
        "schema": route.body.openapi(),
    }


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
        op["parameters"].append(_body(route))
    for status, (description, ref) in sorted(route.responses.items()):
        entry: dict[str, Any] = {"description": description}
        if ref is not None:
            entry["schema"] = {"$ref": f"#/definitions/{ref}"}
        if status in (201, 202):
            entry["headers"] = {"Location": {"type": "string", "description": "An absolute URL."}}
            if status == 202:
                entry["headers"]["Retry-After"] = {
                    "type": "integer",
                    "description": "Seconds to wait before the next poll.",
                }
        op["responses"][str(status)] = entry
    if route.auth != "anonymous":
        op["responses"]["401"] = {
            "description": "no valid Entra ID access token for this API (WWW-Authenticate says "
            "why)",
            "schema": ERROR_REF,
        }
    # no "default" response: the certification checklist wants the statuses declared
    if route.visibility:
        op["x-ms-visibility"] = route.visibility
    if route.public:
        # no credential needed: the anonymous routes, and a poll link that carries its own
        op["security"] = []
    op.update(route.extensions)
    return op


@dataclass(frozen=True)
class Security:
    """How callers authenticate, for the document's security definition."""

    authority_url: str = "https://login.microsoftonline.com"
    tenant: str = "organizations"
    audience: str = "api://defender-bridge"
    key_mode: bool = False

    def definitions(self) -> dict[str, Any]:
        """``securityDefinitions``: the one way this deployment admits callers (a connector
        has one authentication type): Entra ID (OAuth 2.0), or the function key in key mode."""
        if self.key_mode:
            return {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function key of the app: this deployment runs with "
                    "API_AUTH_MODE=key, where the key alone admits a caller.",
                }
            }
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
            }
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


def security_for(settings: Any) -> Security:
    """The security of the deployment ``settings`` describe: its cloud's Entra host, its home
    tenant, its API's Application ID URI, and whether keys admit callers."""
    return Security(
        authority_url=settings.defender.authority_url,
        tenant=settings.identity.tenant_id,
        audience=settings.api_audiences[0],
        key_mode=settings.http.auth_mode == "key",
    )


def document(
    base_url: str, security: Security | None = None, *, routes: Sequence[Route]
) -> dict[str, Any]:
    """The document of ``routes`` (``shared.api.routes.ROUTES``) for the deployment at
    ``base_url`` (``scheme://host``)."""
    security = security or Security()
    parts = urlsplit(base_url)
    scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
    host = parts.netloc or "localhost"
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(route.path, {})
        item[route.method.lower()] = _operation(route)
        item.update(copy.deepcopy(dict(route.path_extensions)))
    return {
        "swagger": "2.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Microsoft Defender XDR incidents, advanced hunting and incident "
            "notifications for workflows and webhooks, across tenants.",
            "contact": {"name": "Defender Bridge operators", "url": f"{scheme}://{host}"},
        },
        "host": host,
        "basePath": "/api",
        "schemes": [scheme],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": security.definitions(),
        "security": security.requirement(),
        "paths": paths,
        "definitions": {name: _with_titles(d) for name, d in DEFINITIONS.items()},
        "x-ms-connector-metadata": [
            {"propertyName": "Categories", "propertyValue": "Security;IT Operations"}
        ],
    }
