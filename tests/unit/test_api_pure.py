"""Pure parts of the HTTP API: templates, durations, authentication of callers, serve's guard,
route matching (push filters: tests/unit/test_push_pure.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.api.access import ALL_TENANTS, Authenticator, from_claims, host_auth_level
from shared.api.endpoints import ENDPOINTS, Endpoint
from shared.api.http import ApiError, Headers, Request
from shared.api.routes import ROUTES, joined, match
from shared.core.errors import AuthError, CallerTokenError
from shared.credentials.values import CallerClaims
from shared.usecases.hunting import (
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


def _claims(*roles: str, scopes: tuple[str, ...] = ()) -> CallerClaims:
    return CallerClaims(
        tenant=T,
        object_id="33333333-3333-3333-3333-333333333333",
        audience="api://x",
        expires=datetime(2026, 12, 1, tzinfo=UTC),
        roles=roles,
        scopes=scopes,
    )


def test_principal_roles_and_tenants_come_from_the_token_claims() -> None:
    caller = from_claims(_claims("Incidents.Read", f"Tenant.{T}"), "tok", {})
    assert caller.may_use(T) and not caller.may_use("22222222-2222-2222-2222-222222222222")
    assert caller.subject == f"{T}/33333333-3333-3333-3333-333333333333"
    assert "tok" not in repr(caller)
    caller.require("Incidents.Read")
    with pytest.raises(ApiError) as info:
        caller.require("Incidents.Write")
    assert info.value.status == 403 and "Incidents.Write" in info.value.message
    assert from_claims(_claims(ALL_TENANTS), "t", {}).tenants is None
    team = from_claims(_claims("Team.Blue"), "t", {"Team.Blue": (T,)})
    assert team.tenants == frozenset({T})
    assert from_claims(_claims("Tenant.not-a-guid"), "t", {}).tenants == frozenset()


class _Validator:
    """Stands in for CallerTokenValidator: 'good' is valid, anything else is refused."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[str] = []

    def validate(self, token: str) -> CallerClaims:
        self.seen.append(token)
        if self.error is not None:
            raise self.error
        if token != "good":
            raise CallerTokenError("the caller's token is not a JWT")
        return _claims("Incidents.Read")


def _request(
    headers: dict[str, str] | None = None, query: dict[str, list[str]] | None = None
) -> Request:
    return Request("GET", "/incidents", query=query or {}, headers=Headers(headers or {}))


def _authenticator(mode: str = "entra", validator: _Validator | None = None) -> Authenticator:
    checker = validator or _Validator()
    return Authenticator(
        mode=mode,  # type: ignore[arg-type]
        validator=lambda: checker,  # type: ignore[arg-type,return-value]
        tenant_roles={},
        audience="api://x",
    )


def test_authenticator_admits_a_valid_token_and_refuses_everything_else() -> None:
    auth = _authenticator()
    assert auth.authenticate(_request({"Authorization": "Bearer good"})).roles == {"Incidents.Read"}
    assert auth.authenticate(_request({"authorization": "bearer  good "})).token == "good"
    for headers, code in (
        ({}, "unauthenticated"),
        ({"x-functions-key": "k"}, "unauthenticated"),
        ({"X-MS-CLIENT-PRINCIPAL": "eyJ9"}, "unauthenticated"),
        ({"Authorization": "Bearer bad"}, "invalid_token"),
        ({"Authorization": "Basic dTpw"}, "invalid_token"),
        ({"Authorization": "Bearer "}, "invalid_token"),
    ):
        with pytest.raises(ApiError) as info:
            auth.authenticate(_request(headers))
        assert info.value.status == 401 and info.value.code == code, headers
        challenge = info.value.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="api://x"'), challenge
        assert ("invalid_token" in challenge) == (code == "invalid_token")
    with pytest.raises(ApiError) as keyed:
        auth.authenticate(_request({"x-functions-key": "k"}))
    assert "function key alone" in keyed.value.message


def test_key_mode_admits_a_request_carrying_a_key_and_still_checks_tokens() -> None:
    auth = _authenticator("key")
    holder = auth.authenticate(_request({"x-functions-key": "k"}))
    assert holder.tenants is None and holder.subject == "function-key" and holder.claims is None
    assert auth.authenticate(_request(query={"code": ["k"]})).subject == "function-key"
    with pytest.raises(ApiError):  # no key reached the app: the host's check was bypassed
        auth.authenticate(_request())
    with pytest.raises(ApiError) as info:
        auth.authenticate(_request({"x-functions-key": "k", "Authorization": "Bearer bad"}))
    assert info.value.status == 401


def test_unreachable_keys_are_a_503_and_challenges_hold_only_safe_characters() -> None:
    down = _authenticator(validator=_Validator(AuthError("no keys")))
    with pytest.raises(ApiError) as info:
        down.authenticate(_request({"Authorization": "Bearer good"}))
    assert info.value.status == 503 and info.value.headers["Retry-After"]
    odd = _authenticator(validator=_Validator(CallerTokenError('aud "é\\x"\r\nX-Evil: 1')))
    with pytest.raises(ApiError) as refused:
        odd.authenticate(_request({"Authorization": "Bearer whatever"}))
    challenge = refused.value.headers["WWW-Authenticate"]
    assert "\r" not in challenge and "\n" not in challenge and "é" not in challenge
    assert challenge.count('"') % 2 == 0


def test_host_auth_level_follows_the_mode_and_fails_closed() -> None:
    assert host_auth_level({}) == "anonymous"
    assert host_auth_level({"API_AUTH_MODE": " Entra "}) == "anonymous"
    assert host_auth_level({"API_AUTH_MODE": "key"}) == "function"
    assert host_auth_level({"API_AUTH_MODE": "nonsense"}) == "function"


def test_serve_guard() -> None:
    from shared.cli.serve import guard

    def ask(method: str = "GET", path: str = "/api/incidents", **headers: str) -> int | None:
        body = headers.pop("body", "").encode()
        request = Request(method, path, headers=Headers(headers), body=body)
        refused = guard(request, key="k" * 40, port=7071)
        return None if refused is None else refused.status

    ok = {"Host": "127.0.0.1:7071", "x-functions-key": "k" * 40}
    assert ask(**ok) is None
    assert (
        ask(**{**ok, "Host": "localhost"}) is None and ask(**{**ok, "Host": "[::1]:7071"}) is None
    )
    for host in ("evil.example", "127.0.0.1:7072", "localhost.evil:7071", "", "127.0.0.2:7071"):
        assert ask(**{**ok, "Host": host}) == 403, host
    assert ask(**{**ok, "Origin": "null"}) == 403
    assert ask(**{**ok, "Sec-Fetch-Site": "cross-site"}) == 403
    assert ask("POST", "/api/ingest", body="{}", **ok) == 415  # untyped: no preflight
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        assert ask("DELETE", "/api/subscriptions", body="{}", **ok, **{"Content-Type": kind}) == 415
    # a DELETE is always preflighted: an untyped body is a client's (Logic Apps' unsubscribe)
    assert ask("DELETE", "/api/subscriptions", body="{}", **ok) is None
    assert (
        ask("POST", "/api/ingest", body="{}", **ok, **{"Content-Type": "application/json"}) is None
    )
    assert ask(**{**ok, "x-functions-key": "k" * 39}) == 401
    assert ask("GET", "/api/health", Host="localhost:7071") is None  # anonymous: no key


def test_route_matching() -> None:
    route, params = match("GET", "/incidents/42")
    assert route.operation_id == "GetIncident" and params == {"id": "42"}
    assert match("patch", "/incidents/42")[0].operation_id == "UpdateIncident"
    with pytest.raises(ApiError) as info:
        match("POST", "/incidents/42")
    assert info.value.status == 405 and "GET" in info.value.headers["Allow"]
    assert len({r.function_name for r in ROUTES}) == len(ROUTES)


def test_every_endpoint_has_exactly_one_route_and_every_route_an_endpoint() -> None:
    """The Functions host indexes ``ENDPOINTS`` (function_app.py), the dispatcher serves
    ``ROUTES``: they list the same routes in the same order, each once, and ``joined`` refuses a
    table that has a route too few, one twice, or one that is not an endpoint."""
    assert [r.endpoint for r in ROUTES] == list(ENDPOINTS)
    assert len({e.operation_id for e in ENDPOINTS}) == len(ENDPOINTS)
    assert len({(e.method, e.path) for e in ENDPOINTS}) == len(ENDPOINTS)
    assert joined(tuple(reversed(ROUTES))) == ROUTES
    with pytest.raises(ValueError, match=r"no route for \['Health'\]"):
        joined(ROUTES[1:])
    with pytest.raises(ValueError, match=r"more than one route for \['Health'\]"):
        joined((*ROUTES, ROUTES[0]))
    stray = replace(ROUTES[0], endpoint=Endpoint("Stray", "GET", "/stray", "A stray route"))
    with pytest.raises(ValueError, match=r"not an endpoint \['Stray'\]"):
        joined((*ROUTES, stray))
    moved = replace(ROUTES[0], endpoint=replace(ROUTES[0].endpoint, path="/healthz"))
    with pytest.raises(
        ValueError, match=r"no route for \['Health'\].*not an endpoint \['Health'\]"
    ):
        joined((moved, *ROUTES[1:]))
