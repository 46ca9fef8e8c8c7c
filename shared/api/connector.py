"""The custom connector's ``apiProperties.json``, from the same route table as its OpenAPI document.

A Power Platform connector is two files (https://github.com/microsoft/PowerPlatformConnectors,
``paconn create --api-def ... --api-prop ...``): the OpenAPI document (``shared.api.openapi``)
and these properties. What they hold here (docs/logic-apps.md):

- **the connection**: with ``API_AUTH_MODE=entra``, an OAuth setting with the ``aad`` identity
  provider: the cloud's login host, the home tenant, the API's Application ID URI as the
  resource, the per-connector redirect URI, and the client id of the connector's own app
  registration (``None`` until the operator names it: it is a different app than the API's);
  with ``key`` the function key as a secure string;
- **capabilities**: actions, and triggers when a route is one (``x-ms-trigger``);
- **policies**: one "update next link" instance for the pageable operations, so the
  ``nextLink`` of ``GET /incidents`` (an absolute URL of the deployment, right for scripts and
  the HTTP action) is rewritten to the connector's own host and the next page goes through the
  connection with its credentials.

Pure: the caller passes the security of the deployment (``shared.api.openapi.security_for``).
"""

from __future__ import annotations

from typing import Any

from shared.api.openapi import Security
from shared.api.routes import ROUTES

#: the connector's colour (Power Platform refuses #007ee5 and #ffffff for certified connectors)
BRAND_COLOR = "#0f6cbd"
#: where a connection's OAuth sign-in returns: one URI per connector, shown once it is saved
REDIRECT_MODE = "GlobalPerConnector"


def api_properties(security: Security, *, connector_client_id: str | None = None) -> dict[str, Any]:
    """``apiProperties.json`` for the deployment whose callers ``security`` describes."""
    pageable = {
        r.operation_id: r.extensions["x-ms-pageable"]["nextLinkName"]
        for r in ROUTES
        if "x-ms-pageable" in r.extensions
    }
    policies = [
        {
            "templateId": "updatenextlink",
            "title": f"Page {operation} through the connector",
            "parameters": {
                "x-ms-apimTemplate-operationName": [operation],
                "x-ms-apimTemplateParameter.nextLinkPropertyName": link,
            },
        }
        for operation, link in pageable.items()
    ]
    capabilities = ["actions"]
    if any("x-ms-trigger" in r.extensions for r in ROUTES):
        capabilities.append("triggers")
    return {
        "properties": {
            "iconBrandColor": BRAND_COLOR,
            "capabilities": capabilities,
            "connectionParameters": _connection(security, connector_client_id),
            "policyTemplateInstances": policies,
        }
    }


def _connection(security: Security, client_id: str | None) -> dict[str, Any]:
    if security.key_mode:
        return {
            "api_key": {
                "type": "securestring",
                "uiDefinition": {
                    "displayName": "Function Key",
                    "description": "A function key of the Defender Bridge app (sent as "
                    "x-functions-key)",
                    "tooltip": "The deployment runs with API_AUTH_MODE=key",
                    "constraints": {"tabIndex": 2, "clearText": False, "required": "true"},
                },
            }
        }
    return {
        "token": {
            "type": "oauthSetting",
            "oAuthSettings": {
                "identityProvider": "aad",
                "clientId": client_id,
                "scopes": [],
                "redirectMode": REDIRECT_MODE,
                "properties": {"IsFirstParty": "False"},
                "customParameters": {
                    "loginUri": {"value": security.authority_url.rstrip("/")},
                    "tenantId": {"value": security.tenant},
                    "resourceUri": {"value": security.audience},
                },
            },
            "uiDefinition": {
                "displayName": "Sign in with Microsoft Entra ID",
                "description": "Sign in with the account whose app roles the connection uses",
                "tooltip": "Your app roles on Defender Bridge decide what the connection can do",
                "constraints": {"required": "true"},
            },
        }
    }
