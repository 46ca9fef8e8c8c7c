"""The OpenAPI document as a Power Platform custom connector: Power Platform's rules
(``tests/api/connector_rules.py``) reject the document as it was before they were encoded and
accept the one the route table generates now."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.api.openapi import Security, document
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
    return document(base, security)


def test_the_document_before_is_rejected_for_both_placements() -> None:
    """The two schema violations the issue names: ``x-ms-notification-content`` on the
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


@pytest.mark.xfail(strict=True, reason="the document is brought in line in the next commits")
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
