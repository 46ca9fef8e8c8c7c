"""The OpenAPI 2.0 document: valid (openapi-spec-validator), importable as a custom connector
(the extensions Logic Apps / Power Automate read), in step with the route table and with the
Functions bindings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from shared.api.openapi import Security, document
from shared.api.routes import ROUTES
from tests.api.conftest import Face, indexed_functions, setenv

ROOT = Path(__file__).resolve().parents[2]


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    methods = ("get", "put", "post", "delete", "patch")
    return [op for item in doc["paths"].values() for m, op in item.items() if m in methods]


def listing_op(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["paths"]["/incidents"]["get"]["responses"])


def test_document_is_valid_openapi_2_for_any_host() -> None:
    for base in ("https://bridge-prod.azurewebsites.net", "http://127.0.0.1:7071"):
        doc = document(base)
        validate(doc)
        assert doc["swagger"] == "2.0" and doc["basePath"] == "/api"
        assert doc["host"] == base.split("://")[1]
        assert len(json.dumps(doc)) < 1_000_000  # the connector size limit


def test_connector_extensions() -> None:
    doc = document("https://x.example.net")
    ops = _operations(doc)
    ids = [op["operationId"] for op in ops]
    summaries = [op["summary"] for op in ops]
    assert len(ids) == len(set(ids)) == len(ROUTES)
    assert len(summaries) == len(set(summaries)) and all(summaries)
    entra = doc["securityDefinitions"]["entraId"]
    assert entra["type"] == "oauth2" and entra["flow"] == "accessCode"
    assert doc["security"] == [{"entraId": ["api://defender-bridge/.default"]}]
    assert set(doc["securityDefinitions"]) == {"entraId"}  # a connector has one
    keyed = document("https://x.example.net", Security(key_mode=True))
    assert keyed["securityDefinitions"]["functionKey"]["name"] == "x-functions-key"
    assert set(keyed["securityDefinitions"]) == {"functionKey"}
    subscribe = doc["paths"]["/subscriptions"]["post"]
    assert subscribe["x-ms-trigger"] == "single"
    body = next(p for p in subscribe["parameters"] if p["in"] == "body")
    callback = body["schema"]["properties"]["callbackUrl"]
    assert callback["x-ms-notification-url"] is True and callback["x-ms-visibility"] == "internal"
    assert body["schema"]["required"] == ["callbackUrl"]
    # the trigger's outputs sit on the path item (Power Platform's schema), not the operation
    assert "x-ms-notification-content" not in subscribe
    content = doc["paths"]["/subscriptions"]["x-ms-notification-content"]["schema"]["$ref"]
    notification = doc["definitions"][content.split("/")[-1]]
    assert notification["properties"]["incident"] == {"$ref": "#/definitions/Incident"}
    assert (
        "201" in subscribe["responses"] and "Location" in subscribe["responses"]["201"]["headers"]
    )
    assert doc["paths"]["/subscriptions/{id}"]["delete"]["x-ms-visibility"] == "internal"
    assert "401" in listing_op(doc) and "401" not in doc["paths"]["/health"]["get"]["responses"]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/consent/callback"]["get"]["security"] == []
    listing = doc["paths"]["/incidents"]["get"]
    assert listing["x-ms-pageable"] == {"nextLinkName": "nextLink"}
    assert any("x-ms-visibility" in op for op in ops)


@pytest.mark.e2e
def test_served_document_names_the_host_it_was_fetched_from(
    face: Face, api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host it was fetched from, and the deployment's Entra ID: its tenant's endpoints and
    the API's audience (with ``API_AUTH_MODE=key``, the function key)."""
    answer = face.get("/openapi.json")
    assert answer.status == 200
    doc = answer.json()
    validate(doc)
    assert doc["host"] == face.base.split("://")[1]
    entra = doc["securityDefinitions"]["entraId"]
    tenant, client = api_env["DEFENDER_TENANT_ID"], api_env["DEFENDER_CLIENT_ID"]
    assert entra["tokenUrl"] == f"{api_env['DEFENDER_AUTHORITY_URL']}/{tenant}/oauth2/v2.0/token"
    assert doc["security"] == [{"entraId": [f"api://{client}/.default"]}]
    setenv(monkeypatch, API_AUTH_MODE="key")
    keyed = face.get("/openapi.json", token=None).json()
    assert keyed["security"] == [{"functionKey": []}]


def test_functions_bindings_follow_the_route_table() -> None:
    """One HTTP function per route with its method and route, anonymous at the host (the app
    authenticates every caller but on the health check and the consent callback; in key mode
    the host checks keys: tests/functions); the queue workers' bindings."""
    bindings = {}
    for name, function in indexed_functions().items():
        raw = [json.loads(b) for b in function.get_raw_bindings()]
        bindings[name] = raw[0]
    for route in ROUTES:
        trigger = bindings[route.function_name]
        assert trigger["type"] == "httpTrigger"
        assert trigger["route"] == route.path.lstrip("/")
        assert [m.upper() for m in trigger["methods"]] == [route.method]
        assert trigger["authLevel"].upper() == "ANONYMOUS"
    assert bindings["hunting_worker"]["queueName"] == "defender-hunting"
    assert bindings["ingest_worker"]["queueName"] == "defender-ingest"
    assert bindings["push_worker"]["queueName"] == "defender-push"
    # the app writes its queues in the data account: the triggers read them there too
    assert bindings["push_worker"]["connection"] == "DATA_STORAGE"
    assert bindings["hunting_worker"]["connection"] == "DATA_STORAGE"


def test_import_with_no_settings_lists_the_http_functions() -> None:
    code = (
        "import json, function_app; "
        "print(json.dumps(sorted(f.get_function_name() for f in function_app.app.get_functions())))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert {r.function_name for r in ROUTES} <= set(names)
