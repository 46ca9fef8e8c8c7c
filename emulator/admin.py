"""The admin API (`/_emulator/...`): a thin HTTP adapter over the control plane.

Each handler reads its request (query parameters, a JSON object body with known fields of the
right types), calls one typed method of `emulator.control.ControlPlane` and answers JSON; bad
input is a 400 `{"error": {"code", "message"}}` (404 for something that does not exist where
the path names it). It is not part of any Microsoft service, has no auth, and its requests are
not counted in the stats. `emulator.routes` maps the paths to these handlers; emulator/README.md
("Admin API") lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from emulator import behaviour, delegated, faults, ratelimit
from emulator.control import CONSENT_FAMILIES, LIFETIMES, ControlPlane
from emulator.http import Request, Response, json_response

_MAX_ACTIVITY = 10_000


class AdminApi:
    """The handlers of `/_emulator/...`, over one control plane."""

    def __init__(self, cloud: ControlPlane) -> None:
        self._cloud = cloud

    # ------------------------------------------------------------------ stats and truth

    def stats(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._cloud.stats.snapshot())

    def requests(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._cloud.stats.log())

    def truth(self, request: Request, match: re.Match[str]) -> Response:
        api = request.param("api") or "legacy"
        if api not in ("legacy", "graph"):
            return admin_error(400, f"'api' must be 'legacy' or 'graph', not '{api}'")
        visible = request.param("visible") or "false"
        if visible not in ("true", "false"):
            return admin_error(400, f"'visible' must be 'true' or 'false', not '{visible}'")
        try:
            rows = self._cloud.truth(
                match["tenant"], "graph" if api == "graph" else "legacy", visible=visible == "true"
            )
        except KeyError as exc:
            return admin_error(404, str(exc.args[0]))
        return json_response(200, {"value": rows})

    # ------------------------------------------------------------------ the local cloud's state

    def activity(self, request: Request, match: re.Match[str]) -> Response:
        payload = json_object(request, {"tenant", "create", "update", "merge"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        tid = payload.get("tenant", self._cloud.home_tenant_id)
        if not isinstance(tid, str) or tid not in self._cloud.tenant_ids:
            return self._tenant_error()
        counts: dict[str, int] = {}
        for key in ("create", "update", "merge"):
            value = payload.get(key, 0)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= _MAX_ACTIVITY
            ):
                return admin_error(400, f"'{key}' must be an integer between 0 and 10000")
            counts[key] = value
        try:
            result = self._cloud.simulate_activity(tid, **counts)
        except KeyError:
            return self._tenant_error()
        return json_response(
            200,
            {
                "tenant": tid,
                "created": list(result.created),
                "updated": list(result.updated),
                "merged": [{"from": s, "into": t} for s, t in result.merged],
            },
        )

    def reset(self, request: Request, match: re.Match[str]) -> Response:
        self._cloud.reset()
        return json_response(200, {"reset": True})

    # ------------------------------------------------------------------ traffic

    def faults(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            try:
                config = faults.parse_fault_config(request.json_body())
            except ValueError as exc:
                return admin_error(400, str(exc))
            self._cloud.configure_faults(config)
        return json_response(200, self._cloud.faults.config.to_json())

    def quotas(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            try:
                family, limits = ratelimit.parse_limits(request.json_body())
            except ValueError as exc:
                return admin_error(400, str(exc))
            self._cloud.set_quota(family, limits)
        return json_response(200, self._cloud.quotas())

    def behaviour(self, request: Request, match: re.Match[str]) -> Response:
        """Service behaviours (emulator.behaviour): POST merges the given keys."""
        if request.method == "POST":
            payload = json_object(request, set(behaviour.KEYS), empty_ok=False)
            if isinstance(payload, Response):
                return payload
            try:
                self._cloud.set_behaviour(**payload)
            except behaviour.BehaviourError as exc:
                return admin_error(400, str(exc))
        return json_response(200, self._cloud.behaviour.settings.to_json())

    # ------------------------------------------------------------------ the app's credential

    def consent(self, request: Request, match: re.Match[str]) -> Response:
        """Grant or revoke the app's consent (service principal) and roles in a tenant."""
        payload = json_object(request, {"tenant", "consent", "roles"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        tid = payload.get("tenant")
        if not isinstance(tid, str) or tid not in self._cloud.tenant_ids:
            return self._tenant_error()
        consent = payload.get("consent", True)
        if not isinstance(consent, bool):
            return admin_error(400, "'consent' must be true or false")
        roles = payload.get("roles")
        if roles is not None and not (
            isinstance(roles, dict)
            and set(roles) <= set(CONSENT_FAMILIES)
            and all(
                isinstance(v, list) and all(isinstance(r, str) for r in v) for v in roles.values()
            )
        ):
            return admin_error(
                400, f"'roles' must map some of {list(CONSENT_FAMILIES)} to lists of role names"
            )
        try:
            granted = self._cloud.set_consent(tid, consent=consent, roles=roles)
        except KeyError:
            return self._tenant_error()
        except ValueError as exc:
            return admin_error(400, str(exc))
        return json_response(200, granted.to_json())

    def rotate(self, request: Request, match: re.Match[str]) -> Response:
        """New client secret in Entra and as a new vault version; optionally revoke the old."""
        try:
            payload = request.json_body() if request.body else {}
        except ValueError:
            return admin_error(400, "the body must be JSON")
        if not isinstance(payload, dict) or set(payload) - {"revoke_old", "expire_old"}:
            return admin_error(400, "the body may only hold 'revoke_old' and 'expire_old'")
        revoke, expire = payload.get("revoke_old", False), payload.get("expire_old", False)
        if not isinstance(revoke, bool) or not isinstance(expire, bool):
            return admin_error(400, "'revoke_old' and 'expire_old' must be true or false")
        return json_response(
            200, self._cloud.rotate_client_secret(revoke_old=revoke, expire_old=expire)
        )

    def tokens(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            payload = json_object(request, set(LIFETIMES))
            if isinstance(payload, Response):
                return payload
            try:
                self._cloud.set_token_lifetimes(**payload)
            except ValueError as exc:
                return admin_error(400, str(exc))
        return json_response(200, self._cloud.token_lifetimes())

    # ------------------------------------------------------------------ users

    def users(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"users": [u.to_json() for u in self._cloud.users]})

    def user_token(self, request: Request, match: re.Match[str]) -> Response:
        """Mint the token a caller sends this web API (the OBO assertion), or one for another
        audience."""
        payload = json_object(request, {"tenant", "user", "audience", "lifetime", "expired"})
        if isinstance(payload, Response):
            return payload
        user = self._find_user(payload)
        if isinstance(user, Response):
            return user
        audience = payload.get("audience")
        if audience is not None and (not isinstance(audience, str) or not audience.strip()):
            return admin_error(400, "'audience' must be a non-empty string")
        span = _token_span(payload)
        if isinstance(span, Response):
            return span
        lifetime, expired = span
        issued = self._cloud.issue_caller_token(
            user, audience=audience, lifetime=lifetime, expired=expired
        )
        return json_response(
            200,
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_on": issued.expires_on,
                "audience": issued.audience,
                "user": user.to_json(),
            },
        )

    def user_consent(self, request: Request, match: re.Match[str]) -> Response:
        """Replace some families of a user's delegated consent to the app."""
        payload = json_object(request, {"tenant", "user", "permissions"})
        if isinstance(payload, Response):
            return payload
        user = self._find_user(payload)
        if isinstance(user, Response):
            return user
        permissions = payload.get("permissions")
        if not isinstance(permissions, dict):
            return admin_error(400, "'permissions' must map families to lists of permissions")
        try:
            updated = self._cloud.set_user_consent(user, permissions)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return json_response(200, updated.to_json())

    def _find_user(self, payload: Mapping[str, Any]) -> delegated.User | Response:
        selector, tenant = payload.get("user"), payload.get("tenant")
        if not isinstance(selector, str) or not selector:
            return admin_error(400, "'user' must be a UPN or object id")
        if tenant is not None and tenant not in self._cloud.tenant_ids:
            return self._tenant_error()
        try:
            user = self._cloud.user(selector, tenant)
        except KeyError:
            return admin_error(400, f"no user '{selector}'; GET /_emulator/users lists them")
        if tenant is not None and user.tenant_id != tenant:
            return admin_error(400, f"user '{selector}' is not in tenant {tenant}")
        return user

    # ------------------------------------------------------------------ device codes

    def devicecodes(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"device_codes": self._cloud.device_codes()})

    def devicecode_decide(self, request: Request, match: re.Match[str]) -> Response:
        approve = match["action"] == "approve"
        fields = {"user_code", "user"} if approve else {"user_code"}
        payload = json_object(request, fields)
        if isinstance(payload, Response):
            return payload
        user_code, user = payload.get("user_code"), payload.get("user")
        if not isinstance(user_code, str) or not user_code:
            return admin_error(400, "'user_code' is required")
        if approve and (not isinstance(user, str) or not user):
            return admin_error(400, "'user' (UPN or object id) is required to approve")
        try:
            self._cloud.decide_device_code(user_code, user, approve=approve)
        except KeyError as exc:
            return admin_error(404, str(exc.args[0]))
        except ValueError as exc:
            return admin_error(400, str(exc))
        return json_response(200, self._cloud.device_code(user_code) or {})

    def auto(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            payload = json_object(request, {"user", "deny"})
            if isinstance(payload, Response):
                return payload
            user, deny = payload.get("user"), payload.get("deny", False)
            if user is not None and (not isinstance(user, str) or not user):
                return admin_error(400, "'user' must be a UPN, an object id or null")
            if not isinstance(deny, bool):
                return admin_error(400, "'deny' must be true or false")
            try:
                self._cloud.auto_approve_device_codes(user, approve=not deny)
            except KeyError:
                return admin_error(400, f"no user '{user}'; GET /_emulator/users lists them")
        return json_response(200, {"auto": self._cloud.auto_approvals()})

    # ------------------------------------------------------------------ the Defender Bridge API

    def api(self, request: Request, match: re.Match[str]) -> Response:
        """The API's identifiers, app roles, client apps and role assignments."""
        return json_response(200, self._cloud.api_assignments())

    def api_roles(self, request: Request, match: re.Match[str]) -> Response:
        """Replace one principal's app roles on the API."""
        payload = json_object(request, {"principal", "roles"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        selector = payload.get("principal")
        if not isinstance(selector, str) or not selector.strip():
            return admin_error(400, "'principal' must be a UPN, object id, client id or name")
        try:
            assigned = self._cloud.set_api_roles(selector, payload.get("roles"))
        except KeyError:
            return _no_principal(selector)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return json_response(200, assigned)

    def api_token(self, request: Request, match: re.Match[str]) -> Response:
        """Mint the token a principal would get for the API (to try the API by hand)."""
        payload = json_object(request, {"principal", "lifetime", "expired"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        selector = payload.get("principal")
        if not isinstance(selector, str) or not selector.strip():
            return admin_error(400, "'principal' must be a UPN, object id, client id or name")
        span = _token_span(payload)
        if isinstance(span, Response):
            return span
        lifetime, expired = span
        try:
            principal = self._cloud.api_principal(selector)
        except KeyError:
            return _no_principal(selector)
        issued = self._cloud.issue_api_token(principal, lifetime=lifetime, expired=expired)
        return json_response(
            200,
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_on": issued.expires_on,
                "audience": issued.audience,
                "principal": principal.to_json(self._cloud.api_roles_of(principal)),
            },
        )

    def _tenant_error(self) -> Response:
        return admin_error(400, f"'tenant' must be one of {list(self._cloud.tenant_ids)}")


def admin_error(status: int, message: str) -> Response:
    """A 400 `BadRequest` or 404 `NotFound` in the admin API's error shape."""
    code = "BadRequest" if status == 400 else "NotFound"
    return json_response(status, {"error": {"code": code, "message": message}})


def _token_span(payload: Mapping[str, Any]) -> tuple[int | None, bool] | Response:
    """``lifetime`` (seconds, optional) and ``expired`` of a token-minting request, or a 400."""
    expired = payload.get("expired", False)
    if not isinstance(expired, bool):
        return admin_error(400, "'expired' must be true or false")
    lifetime = payload.get("lifetime")
    if lifetime is None:
        return None, expired
    try:
        return delegated.parse_lifetime(lifetime, "lifetime"), expired
    except ValueError as exc:
        return admin_error(400, str(exc))


def _no_principal(selector: str) -> Response:
    return admin_error(400, f"no principal '{selector[:80]}'; GET /_emulator/api lists them")


def json_object(
    request: Request, allowed: set[str], *, empty_ok: bool = True
) -> dict[str, Any] | Response:
    """The admin request's JSON object body, or a 400. An empty body is `{}` when `empty_ok`,
    else not JSON."""
    try:
        payload = request.json_body() if request.body or not empty_ok else {}
    except ValueError:
        return admin_error(400, "the body must be JSON")
    if not isinstance(payload, dict):
        return admin_error(400, "the body must be a JSON object")
    unknown = set(payload) - allowed
    if unknown:
        return admin_error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    return payload
