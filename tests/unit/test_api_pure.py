"""Pure parts of the HTTP API: templates, durations, principals, route matching (push filters:
tests/unit/test_push_pure.py)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from shared.api.access import ALL_TENANTS, principal
from shared.api.http import ApiError, Headers, Request
from shared.api.routes import ROUTES, match
from shared.hunting import (
    TemplateError,
    duration_literal,
    parse_duration,
    parse_template,
    string_literal,
    templates,
)

T = "11111111-1111-1111-1111-111111111111"


def test_shipped_templates_load_and_render_with_defaults() -> None:
    loaded = templates()
    assert len(loaded) >= 4
    for template in loaded.values():
        required = {p.name: _sample(p.kind, p.values) for p in template.parameters if p.required}
        assert "{{" not in template.render(required)


def _sample(kind: str, values: tuple[str, ...]) -> object:
    return {
        "string": "x",
        "int": 1,
        "datetime": "2026-11-01T00:00:00Z",
        "duration": "1d",
        "list": ["a"],
    }.get(kind, values[0] if values else "x")


def test_malformed_templates_do_not_load() -> None:
    with pytest.raises(TemplateError, match="do not match"):
        parse_template("t", "// summary: s\n// param a string -- x\nAlertInfo | take 1")
    with pytest.raises(TemplateError, match="do not match"):
        parse_template("t", "// summary: s\nAlertInfo | where X == {{b}}")
    with pytest.raises(TemplateError, match="bad param"):
        parse_template("t", "// summary: s\n// param a float -- x\nAlertInfo | take {{a}}")
    with pytest.raises(TemplateError, match="default"):
        parse_template(
            "t", "// summary: s\n// param a int default=5 max=3 -- x\nAlertInfo | take {{a}}"
        )


def test_durations_and_literals() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("PT6H30M") == timedelta(hours=6, minutes=30)
    assert duration_literal(timedelta(hours=36)) == "36h"
    assert duration_literal(timedelta(seconds=90)) == "90s"
    for bad in ("0d", "7 days", "P", "PT", "-1d", "99999d"):
        with pytest.raises(ValueError, match="duration|more than 0"):
            parse_duration(bad)
    assert string_literal('a"b\\c') == '"a\\"b\\\\c"'


def _principal(*roles: str, role_typ: str = "roles") -> Request:
    data = {"role_typ": role_typ, "claims": [{"typ": role_typ, "val": r} for r in roles]}
    header = base64.b64encode(json.dumps(data).encode()).decode()
    return Request("GET", "/x", headers=Headers({"x-ms-client-principal": header}))


def test_principal_roles_and_tenants() -> None:
    caller = principal(_principal("Incidents.Read", f"Tenant.{T}"), tenant_roles={}, required=False)
    assert caller.may_use(T) and not caller.may_use("22222222-2222-2222-2222-222222222222")
    caller.require("Incidents.Read")
    with pytest.raises(ApiError) as info:
        caller.require("Incidents.Write")
    assert info.value.status == 403 and "Incidents.Write" in info.value.message
    everyone = principal(
        _principal(ALL_TENANTS, role_typ="http://x/role"), tenant_roles={}, required=False
    )
    assert everyone.tenants is None
    with pytest.raises(ApiError):
        principal(Request("GET", "/x"), tenant_roles={}, required=True)


def test_route_matching() -> None:
    route, params = match("GET", "/incidents/42")
    assert route.operation_id == "GetIncident" and params == {"id": "42"}
    assert match("patch", "/incidents/42")[0].operation_id == "UpdateIncident"
    with pytest.raises(ApiError) as info:
        match("POST", "/incidents/42")
    assert info.value.status == 405 and "GET" in info.value.headers["Allow"]
    assert len({r.function_name for r in ROUTES}) == len(ROUTES)
