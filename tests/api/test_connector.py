"""The OpenAPI document as a Power Platform custom connector: Power Platform's rules
(``tests/api/connector_rules.py``) reject the document as it was before they were encoded and
accept the one the route table generates now."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.api.openapi import Security, document
from shared.api.routes import ROUTES
from tests.api.connector_rules import problems, title_case

DATA = Path(__file__).parent / "data"
#: the document as ``document("https://bridge.example.net")`` generated it before these rules
BEFORE = DATA / "openapi-before-connector-rules.json"
ENTRA = Security(
    authority_url="https://login.microsoftonline.com",
    tenant="11111111-2222-3333-4444-555555555555",
    audience="api://66666666-7777-8888-9999-000000000000",
)


def _new(security: Security = ENTRA, base: str = "https://bridge.example.net") -> dict[str, Any]:
    return document(base, security, routes=ROUTES)


def test_the_document_before_is_rejected_for_both_placements() -> None:
    """The two schema violations of the earlier document: ``x-ms-notification-content`` on the
    operation (the schema allows it on the path item only) and ``x-ms-pageable`` with
    ``itemName`` (the schema allows ``nextLinkName`` alone)."""
    found = problems(json.loads(BEFORE.read_text()))
    assert (
        "$.paths['/subscriptions'].post: 'x-ms-notification-content' is not allowed here" in found
    )
    assert "$.paths['/incidents'].get.x-ms-pageable: 'itemName' is not allowed here" in found
    # and the checklist's: default responses, raw names as titles, no contact, two securities
    text = "\n".join(found)
    assert ".responses.default: declare the success and error statuses" in text
    assert "x-ms-summary: 'createdFrom' is the raw name, not a title" in text
    assert "$.info.contact: missing" in text
    assert "a connector has exactly one authentication type (found 2)" in text
    assert "items.enum: an array filter lists the values it accepts" in text


@pytest.mark.parametrize("key_mode", [False, True])
def test_the_generated_document_passes(key_mode: bool) -> None:
    security = Security(
        authority_url=ENTRA.authority_url,
        tenant=ENTRA.tenant,
        audience=ENTRA.audience,
        key_mode=key_mode,
    )
    assert problems(_new(security)) == []


def test_the_rules_can_fail() -> None:
    """Each kind of rule reports a document that breaks it (mutations of a clean document)."""
    clean: dict[str, Any] = {
        "swagger": "2.0",
        "info": {
            "title": "Bridge",
            "version": "1.0",
            "description": "Incidents.",
            "contact": {"name": "Ops", "url": "https://example.net"},
        },
        "securityDefinitions": {"k": {"type": "apiKey", "name": "k", "in": "header"}},
        "paths": {
            "/things": {
                "get": {
                    "operationId": "ListThings",
                    "summary": "List things",
                    "description": "Lists the things.",
                    "parameters": [dict(_PARAM)],
                    "responses": {"200": {"description": "the things"}},
                }
            }
        },
    }
    assert problems(clean) == []
    op = ["paths", "/things", "get"]
    cases: list[tuple[list[str], str, Any, str]] = [
        (op, "x-ms-notification-content", {}, "'x-ms-notification-content' is not allowed"),
        (op, "x-ms-pageable", {"nextLinkName": "n", "itemName": "v"}, "'itemName' is not"),
        ([*op, "responses"], "default", {"description": "e"}, "not 'default'"),
        (op, "x-ms-visibility", "hidden", "x-ms-visibility"),
        (op, "summary", "List/things.", "summary"),
        (op, "description", "", "description: missing"),
        (["info"], "title", "Bridge API", "the word 'API'"),
        (["info"], "description", "For Power Automate.", "Power Automate"),
        (["info"], "contact", {"name": "Ops"}, "needs a name and a url"),
        (["securityDefinitions"], "j", {"type": "basic"}, "exactly one"),
        (
            [*op, "responses"],
            "202",
            {"description": "later", "headers": {"Location": {"type": "string"}}},
            "declares Retry-After",
        ),
        (
            op,
            "parameters",
            [{**_PARAM, "x-ms-summary": "top"}],
            "is not in Title Case",
        ),
        (op, "parameters", [{**_PARAM, "x-ms-summary": "Top", "name": "Top"}], "raw name"),
        (op, "parameters", [{k: v for k, v in _PARAM.items() if k != "x-ms-summary"}], "missing"),
        (
            op,
            "parameters",
            [{**_PARAM, "type": "array", "items": {"type": "string"}}],
            "items.enum",
        ),
    ]
    for path, key, value, expected in cases:
        doc = copy.deepcopy(clean)
        target: Any = doc
        for part in path:
            target = target[part]
        target[key] = value
        found = problems(doc)
        assert any(expected in p for p in found), (key, value, found)


_PARAM = {
    "name": "top",
    "in": "query",
    "type": "integer",
    "description": "How many.",
    "x-ms-summary": "Page Size",
}


def test_title_case() -> None:
    for good in ("Page Size", "Created From (UTC)", "Tenant ID", "Run as the Caller", "KQL Query"):
        assert title_case(good), good
    for bad in ("page size", "createdFrom", "Created date", "Assigned_To", "X-Defender-Tenant x"):
        assert not title_case(bad), bad


def _json_schema(schema: Any, definitions: dict[str, Any]) -> Any:
    """An OpenAPI 2.0 schema as JSON Schema: ``x-nullable`` admits null, references resolve."""
    if isinstance(schema, list):
        return [_json_schema(s, definitions) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _json_schema(definitions[schema["$ref"].split("/")[-1]], definitions)
    out = {k: _json_schema(v, definitions) for k, v in schema.items() if not k.startswith("x-")}
    if schema.get("x-nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False  # nothing delivered goes undeclared
    return out


@pytest.mark.e2e
def test_the_trigger_outputs_describe_what_push_posts(cloud: Any) -> None:
    """``x-ms-notification-content`` (the trigger's typed outputs in the designer) admits every
    body push delivers for the emulator's incidents, and declares every field it holds."""
    from jsonschema import Draft4Validator

    from shared.defender.model import normalize
    from tests.api.conftest import tenants, truth
    from tests.api.logicapps import push_body

    doc = _new()
    content = doc["paths"]["/subscriptions"]["x-ms-notification-content"]
    validator = Draft4Validator(_json_schema(content["schema"], doc["definitions"]))
    home, customer = tenants(cloud)
    checked = 0
    for tenant in (home, customer):
        for raw in truth(cloud, tenant):
            body = push_body(tenant, normalize(raw, "graph"))
            errors = [e.message for e in validator.iter_errors(body)]
            assert not errors, (body, errors)
            checked += 1
    assert checked > 100


# ---------------------------------------------------------------------- apiProperties.json

#: the keys Power Platform's apiProperties schema allows (schemas/paconn-apiProperties.schema.json)
PROPERTIES_KEYS = {
    "iconBrandColor",
    "publisher",
    "stackOwner",
    "capabilities",
    "connectionParameters",
    "policyTemplateInstances",
}
OAUTH_KEYS = {
    "identityProvider",
    "clientId",
    "clientSecret",
    "redirectMode",
    "redirectUrl",
    "scopes",
    "properties",
    "additionalParameters",
    "customParameters",
}
#: the ``aad`` identity provider's custom parameters: resourceUri required, nothing else
AAD_PARAMETERS = {"resourceUri", "loginUri", "tenantId"}


def _property_problems(props: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Where ``apiProperties.json`` breaks the schema's rules or disagrees with ``doc``."""
    out: list[str] = []
    if set(props) != {"properties"}:
        out.append("top level: only 'properties'")
    body = props.get("properties", {})
    out += [f"properties.{k}: not allowed" for k in set(body) - PROPERTIES_KEYS]
    color = str(body.get("iconBrandColor", "")).lower()
    if not re.fullmatch(r"#[0-9a-f]{6}", color) or color in ("#007ee5", "#ffffff"):
        out.append("iconBrandColor: a colour other than #007ee5 and #ffffff")
    params = body.get("connectionParameters", {})
    for name, param in params.items():
        if not re.fullmatch(r"[0-9a-zA-Z_]+", name):
            out.append(f"connectionParameters.{name}: letters, digits and _ only")
        if param.get("type") == "oauthSetting":
            oauth = param.get("oAuthSettings", {})
            out += [f"oAuthSettings.{k}: not allowed" for k in set(oauth) - OAUTH_KEYS]
            if oauth.get("identityProvider") == "aad":
                custom = oauth.get("customParameters", {})
                out += [
                    f"customParameters.{k}: not allowed for aad"
                    for k in set(custom) - AAD_PARAMETERS
                ]
                if "resourceUri" not in custom:
                    out.append("customParameters.resourceUri: required for aad")
                if any(set(v) != {"value"} for v in custom.values()):
                    out.append("customParameters: each is {'value': ...}")
        elif param.get("type") not in ("string", "securestring", "int", "bool"):
            out.append(f"connectionParameters.{name}.type: not a connection parameter type")
    operations = {
        op["operationId"]: op
        for item in doc["paths"].values()
        for m, op in item.items()
        if m in ("get", "put", "post", "delete", "patch")
    }
    pageable = {k for k, op in operations.items() if "x-ms-pageable" in op}
    covered: set[str] = set()
    for policy in body.get("policyTemplateInstances", []):
        if policy.get("templateId") != "updatenextlink":
            continue
        parameters = policy.get("parameters", {})
        link = parameters.get("x-ms-apimTemplateParameter.nextLinkPropertyName")
        for name in parameters.get("x-ms-apimTemplate-operationName", []):
            if name not in operations:
                out.append(f"policy: operation '{name}' is not in the document")
            elif operations[name].get("x-ms-pageable", {}).get("nextLinkName") != link:
                out.append(f"policy: '{link}' is not the nextLinkName of {name}")
            covered.add(name)
    if pageable - covered:
        out.append(
            f"policy: pageable operations without the next-link policy: {pageable - covered}"
        )
    triggers = any("x-ms-trigger" in op for op in operations.values())
    if triggers != ("triggers" in body.get("capabilities", [])):
        out.append("capabilities: 'triggers' exactly when an operation is a trigger")
    return out


@pytest.mark.parametrize("key_mode", [False, True])
def test_api_properties_follow_the_schema_and_the_route_table(key_mode: bool) -> None:
    from shared.api.connector import api_properties

    security = Security(
        authority_url="https://login.microsoftonline.us",
        tenant=ENTRA.tenant,
        audience=ENTRA.audience,
        key_mode=key_mode,
    )
    props = api_properties(security, connector_client_id="12345678-1234-1234-1234-123456789012")
    assert _property_problems(props, _new(security)) == []
    params = props["properties"]["connectionParameters"]
    if key_mode:
        assert params["api_key"]["type"] == "securestring"
        return
    oauth = params["token"]["oAuthSettings"]
    assert oauth["identityProvider"] == "aad"
    assert oauth["clientId"] == "12345678-1234-1234-1234-123456789012"
    custom = {k: v["value"] for k, v in oauth["customParameters"].items()}
    # the sign-in the document's security definition describes: same cloud, tenant, resource
    entra = _new(security)["securityDefinitions"]["entraId"]
    assert entra["tokenUrl"] == f"{custom['loginUri']}/{custom['tenantId']}/oauth2/v2.0/token"
    assert custom == {
        "loginUri": "https://login.microsoftonline.us",
        "tenantId": ENTRA.tenant,
        "resourceUri": ENTRA.audience,
    }


def test_the_property_rules_can_fail() -> None:
    from shared.api.connector import api_properties

    doc = _new()
    good = api_properties(ENTRA)
    cases = {
        "iconBrandColor": lambda p: p["properties"].update(iconBrandColor="#007ee5"),
        "not allowed for aad": lambda p: p["properties"]["connectionParameters"]["token"][
            "oAuthSettings"
        ]["customParameters"].update(enableOnbehalfOfLogin={"value": "false"}),
        "without the next-link policy": lambda p: p["properties"].update(
            policyTemplateInstances=[]
        ),
        "capabilities": lambda p: p["properties"].update(capabilities=["actions"]),
    }
    for expected, mutate in cases.items():
        props = copy.deepcopy(good)
        mutate(props)
        assert any(expected in p for p in _property_problems(props, doc)), expected


@pytest.mark.e2e
def test_the_cli_writes_both_files_for_the_deployment(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    import io

    from shared.cli import main

    out = io.StringIO()
    code = main(
        ["connector", "--url", "https://bridge.contoso.com", "--out", str(tmp_path)], out=out
    )
    assert code == 0, out.getvalue()
    doc = json.loads((tmp_path / "apiDefinition.swagger.json").read_text())
    props = json.loads((tmp_path / "apiProperties.json").read_text())
    assert doc["host"] == "bridge.contoso.com" and problems(doc) == []
    assert _property_problems(props, doc) == []
    oauth = props["properties"]["connectionParameters"]["token"]["oAuthSettings"]
    assert oauth["customParameters"]["tenantId"]["value"] == api_env["DEFENDER_TENANT_ID"]
    resource = f"api://{api_env['DEFENDER_CLIENT_ID']}"
    assert oauth["customParameters"]["resourceUri"]["value"] == resource
    assert "paconn create" in out.getvalue()
    for bad in (
        ["--url", "bridge.contoso.com"],
        ["--url", "https://x.net/api"],  # an origin only: the settings' rule
        ["--url", "https://x.net?code=secret"],
        ["--url", "https://x.net#frag"],
        ["--url", "https://x.net", "--connector-client-id", "x"],
    ):
        assert main(["connector", *bad, "--out", str(tmp_path)], out=io.StringIO()) == 2
