"""The emulator's admin API (`/_emulator/...`): stats, the request log, ground truth, simulated
activity, faults, quotas, consent, secret rotation, reset, users, device codes and token lifetimes.

Tests and the demo drive the local cloud through it; it is not part of any Microsoft service, and
its requests are not counted in the stats. `emulator.server` routes `/_emulator/...` paths to the
methods of `AdminApi`; the state they read and change belongs to the `Emulator`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emulator import approles, behaviour, defender, delegated, entra, faults, ratelimit
from emulator.http import Request, Response, json_response

if TYPE_CHECKING:
    from emulator.server import Emulator


class AdminApi:
    """The handlers of `/_emulator/...`, over one emulator's live state."""

    def __init__(self, emulator: Emulator) -> None:
        self._emu = emulator

    def stats(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._emu.stats.snapshot())

    def requests(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._emu.stats.log())

    def truth(self, request: Request, match: re.Match[str]) -> Response:
        tid = match["tenant"]
        api = request.param("api") or "legacy"
        if api not in ("legacy", "graph"):
            return admin_error(400, f"'api' must be 'legacy' or 'graph', not '{api}'")
        visible = request.param("visible") or "false"
        if visible not in ("true", "false"):
            return admin_error(400, f"'visible' must be 'true' or 'false', not '{visible}'")
        store = self._emu.world.store
        if tid not in store:
            return admin_error(404, f"unknown tenant '{tid}'")
        at = self._emu.clock() if visible == "true" else None
        return json_response(200, {"value": defender.truth(store, tid, api, at)})

    def activity(self, request: Request, match: re.Match[str]) -> Response:
        payload = json_object(request, {"tenant", "create", "update", "merge"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        store = self._emu.world.store
        tid = payload.get("tenant", self._emu.home_tenant_id)
        if not isinstance(tid, str) or tid not in store:
            return admin_error(400, f"'tenant' must be one of {list(self._emu.tenant_ids)}")
        counts: dict[str, int] = {}
        for key in ("create", "update", "merge"):
            value = payload.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
                return admin_error(400, f"'{key}' must be an integer between 0 and 10000")
            counts[key] = value
        result = store.simulate(
            tid,
            self._emu.clock(),
            create=counts["create"],
            update=counts["update"],
            merge=counts["merge"],
        )
        return json_response(
            200,
            {
                "tenant": tid,
                "created": list(result.created),
                "updated": list(result.updated),
                "merged": [{"from": s, "into": t} for s, t in result.merged],
            },
        )

    def faults(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            try:
                config = faults.parse_fault_config(request.json_body())
            except ValueError as exc:
                return admin_error(400, str(exc))
            self._emu.faults.configure(config)
        return json_response(200, self._emu.faults.config.to_json())

    def quotas(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            try:
                family, limits = ratelimit.parse_limits(request.json_body())
            except ValueError as exc:
                return admin_error(400, str(exc))
            self._emu.limiter.set_limits(family, limits)
        return json_response(200, self._emu.limiter.quotas())

    def consent(self, request: Request, match: re.Match[str]) -> Response:
        """Grant or revoke the app's consent (service principal) and roles in a tenant."""
        payload = json_object(request, {"tenant", "consent", "roles"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        directory = self._emu.world.directory
        tid = payload.get("tenant")
        if tid not in directory.tenants:
            return admin_error(400, f"'tenant' must be one of {list(self._emu.tenant_ids)}")
        consent = payload.get("consent", True)
        if not isinstance(consent, bool):
            return admin_error(400, "'consent' must be true or false")
        roles = payload.get("roles")
        families = ("legacy", "graph", "vault")
        if roles is not None and not (
            isinstance(roles, dict)
            and set(roles) <= set(families)
            and all(
                isinstance(v, list) and all(isinstance(r, str) for r in v) for v in roles.values()
            )
        ):
            return admin_error(
                400, f"'roles' must map some of {list(families)} to lists of role names"
            )
        with directory.lock:
            if not consent:
                directory.consents.pop(tid, None)
            else:
                granted = directory.consents.setdefault(tid, dict(entra.DEFAULT_ROLES))
                for family, names in (roles or {}).items():
                    granted[family] = tuple(names)
            state = directory.consents.get(tid)
        return json_response(
            200,
            {
                "tenant": tid,
                "consent": state is not None,
                "roles": {k: list(v) for k, v in (state or {}).items()},
            },
        )

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
            200, self._emu.rotate_client_secret(revoke_old=revoke, expire_old=expire)
        )

    def behaviour(self, request: Request, match: re.Match[str]) -> Response:
        """Service behaviours (emulator.behaviour): POST merges the given keys."""
        if request.method == "POST":
            payload = json_object(request, set(behaviour.KEYS), empty_ok=False)
            if isinstance(payload, Response):
                return payload
            try:
                self._emu.set_behaviour(**payload)
            except behaviour.BehaviourError as exc:
                return admin_error(400, str(exc))
        return json_response(200, self._emu.behaviour.settings.to_json())

    def reset(self, request: Request, match: re.Match[str]) -> Response:
        self._emu.reset()
        return json_response(200, {"reset": True})

    # ------------------------------------------------------------------ users

    def users(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"users": [u.to_json() for u in self._emu.users]})

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
        token, expires_on = self._emu.delegated_service().caller_token(
            user, audience=audience, lifetime=lifetime, expired=expired
        )
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_on": expires_on,
                "audience": (audience or self._emu.app_id_uri).rstrip("/"),
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
            updated = delegated.set_consent(self._emu.world.users, user, permissions)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return json_response(200, updated.to_json())

    def _find_user(self, payload: Mapping[str, Any]) -> delegated.User | Response:
        selector, tenant = payload.get("user"), payload.get("tenant")
        if not isinstance(selector, str) or not selector:
            return admin_error(400, "'user' must be a UPN or object id")
        if tenant is not None and tenant not in self._emu.tenant_ids:
            return admin_error(400, f"'tenant' must be one of {list(self._emu.tenant_ids)}")
        try:
            user = self._emu.user(selector, tenant)
        except KeyError:
            return admin_error(400, f"no user '{selector}'; GET /_emulator/users lists them")
        if tenant is not None and user.tenant_id != tenant:
            return admin_error(400, f"user '{selector}' is not in tenant {tenant}")
        return user

    # ------------------------------------------------------------------ the Defender Bridge API

    def api(self, request: Request, match: re.Match[str]) -> Response:
        """The API's identifiers, app roles, client apps and role assignments."""
        world = self._emu.world
        return json_response(200, approles.assignments(world.directory, world.users))

    def api_roles(self, request: Request, match: re.Match[str]) -> Response:
        """Replace one principal's app roles on the API."""
        payload = json_object(request, {"principal", "roles"}, empty_ok=False)
        if isinstance(payload, Response):
            return payload
        selector = payload.get("principal")
        if not isinstance(selector, str) or not selector.strip():
            return admin_error(400, "'principal' must be a UPN, object id, client id or name")
        try:
            assigned = self._emu.set_api_roles(selector, payload.get("roles"))
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
            principal = self._emu.api_principal(selector)
        except KeyError:
            return _no_principal(selector)
        token, expires_on = approles.token(
            self._emu.delegated_service(), principal, lifetime=lifetime, expired=expired
        )
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_on": expires_on,
                "audience": self._emu.app_id_uri,
                "principal": principal.to_json(
                    self._emu.world.directory.api_roles.get(principal.object_id, ())
                ),
            },
        )

    def devicecodes(self, request: Request, match: re.Match[str]) -> Response:
        state = self._emu.world.users
        with state.lock:
            codes = [c.to_json() for c in state.device_codes.values()]
        return json_response(200, {"device_codes": codes})

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
            self._emu.decide_device_code(user_code, user, approve=approve)
        except KeyError as exc:
            return admin_error(404, str(exc.args[0]))
        except ValueError as exc:
            return admin_error(400, str(exc))
        state = self._emu.world.users
        with state.lock:
            code = state.by_user_code(user_code)
            shown = code.to_json() if code else {}
        return json_response(200, shown)

    def auto(self, request: Request, match: re.Match[str]) -> Response:
        state = self._emu.world.users
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
                self._emu.auto_approve_device_codes(user, approve=not deny)
            except KeyError:
                return admin_error(400, f"no user '{user}'; GET /_emulator/users lists them")
        with state.lock:
            auto = [
                {"tenant": tid, "user": oid, "action": "approve" if ok else "deny"}
                for tid, (oid, ok) in sorted(state.auto.items())
            ]
        return json_response(200, {"auto": auto})

    def tokens(self, request: Request, match: re.Match[str]) -> Response:
        if request.method == "POST":
            payload = json_object(
                request, {"lifetime", "mi_lifetime", "refresh_lifetime", "device_code_lifetime"}
            )
            if isinstance(payload, Response):
                return payload
            try:
                self._emu.set_token_lifetimes(**payload)
            except ValueError as exc:
                return admin_error(400, str(exc))
        return json_response(200, self._emu.token_lifetimes())


def admin_error(status: int, message: str) -> Response:
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
