"""The control plane: the local cloud without its sockets.

`ControlPlane` owns the state (`emulator.state.World`, replaced by `reset`) and everything
around it that a test or the admin API turns: request stats, fault injection, quotas, service
behaviours, token lifetimes. It offers every operation of the admin API (`emulator.admin` is
a thin HTTP adapter over it) as a typed method, and builds the service handlers (Entra, user
flows, Key Vault, Defender and Graph) over the live state for the HTTPS server
(`emulator.server`, whose `Emulator` is a control plane that also serves).

Tests and benchmarks call it in process (`emu.reset()`, `emu.set_behaviour(...)`,
`emu.caller_token("analyst")`) instead of an HTTPS round trip. Errors follow one rule: a
`KeyError` names something that does not exist (a user, a principal, a device code, a
tenant), a `ValueError` a value outside its rule; the message is what the admin API answers.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from emulator import (
    approles,
    behaviour,
    data,
    defender,
    delegated,
    entra,
    faults,
    hunting,
    keyvault,
    ratelimit,
    state,
    stats,
)
from emulator.config import EmulatorConfig
from emulator.model import Clock, utc_now

ApiName = Literal["legacy", "graph"]
#: the lifetimes `set_token_lifetimes` takes (seconds)
LIFETIMES = frozenset({"lifetime", "mi_lifetime", "refresh_lifetime", "device_code_lifetime"})
#: the permission families whose application roles a consent grants
CONSENT_FAMILIES = ("legacy", "graph", "vault")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token minted by the control plane, and when it expires (epoch seconds)."""

    access_token: str
    expires_on: int
    audience: str


@dataclass(frozen=True, slots=True)
class AppConsent:
    """The app's consent in one tenant: whether it has a service principal there, and the
    application roles of its new tokens per permission family."""

    tenant: str
    consented: bool
    roles: Mapping[str, tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        """The consent as the admin API shows it."""
        return {
            "tenant": self.tenant,
            "consent": self.consented,
            "roles": {k: list(v) for k, v in self.roles.items()},
        }


class ControlPlane:
    """The local cloud's state and every operation on it, in process (no sockets)."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock = utc_now) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self._ids = state.derive_ids(self.config)
        #: the secret the managed-identity endpoint wants in `X-IDENTITY-HEADER`
        self.identity_header = secrets.token_hex(16)
        self._credentials = state.Credentials.generate(self._ids.client_id)
        self._issuer = entra.TokenIssuer(clock)
        self.stats = stats.Stats(self.config.request_log_size)
        # read on every Defender and Graph request, so a test may swap the injector itself
        self.faults = faults.FaultInjector()
        self.limiter = ratelimit.RateLimiter(self.config.quotas)
        self.hunting_cpu = hunting.CpuMeter()
        self.behaviour = behaviour.Behaviour(self.config.behaviour_settings(self.tenant_ids))
        if self.config.device_code_interval < 1:
            raise ValueError(
                "device_code_interval must be at least 1 second (MSAL busy-polls at 0)"
            )
        self._hunting_limits = self.config.hunting_limits()
        # Runtime token lifetimes (`set_token_lifetimes`); reset() restores the config values.
        self._lifetimes: dict[str, int] = {}
        self._world: state.World | None = None

    # ------------------------------------------------------------------ lifecycle

    def seed(self) -> None:
        """Build the seeded state at the clock's now (the emulator does this when it starts).

        Raises:
            ValueError: the config names a device-code auto user that is not seeded.
        """
        self._world = self._seed_at(self.clock())

    def reset(self) -> None:
        """Back to the seeded state (seeded at the same instant); clears stats, faults, quota,
        consent, user and app-role changes, device codes, refresh tokens and lifetime changes,
        and restores the configured behaviours."""
        world = self.world
        self.behaviour = behaviour.Behaviour(self.config.behaviour_settings(self.tenant_ids))
        self._world = self._seed_at(world.seeded_at)
        self._lifetimes.clear()
        self.stats.clear()
        self.faults.configure(faults.FaultConfig())
        self.limiter.reset()
        self.hunting_cpu.reset()

    @property
    def world(self) -> state.World:
        """The live state (directory, vault, incident store, users)."""
        if self._world is None:
            raise RuntimeError("the local cloud is not seeded yet (start the emulator)")
        return self._world

    def _seed_at(self, now: datetime) -> state.World:
        return state.seed_world(
            self.config,
            self._ids,
            self._credentials,
            now,
            late_arrival_seconds=self.behaviour.settings.late_arrival_seconds,
        )

    # ------------------------------------------------------------------ who is who

    @property
    def home_tenant_id(self) -> str:
        """The home tenant (where the app is registered and the vault lives)."""
        return self._ids.tenant_ids[0]

    @property
    def tenant_ids(self) -> tuple[str, ...]:
        """All seeded tenants, home first."""
        return self._ids.tenant_ids

    @property
    def client_id(self) -> str:
        """The seeded app registration's client id."""
        return self._ids.client_id

    @property
    def identity_client_id(self) -> str:
        """Client id of the system-assigned identity (it may get secrets from the vault)."""
        return self._ids.system_identity.client_id

    @property
    def unauthorized_identity_client_id(self) -> str:
        """Client id of a user-assigned identity with no vault access (vault answers 403)."""
        return self._ids.user_identity.client_id

    @property
    def federated_identity_client_id(self) -> str:
        """Client id of the user-assigned identity the app trusts as a federated credential
        (the same identity as `unauthorized_identity_client_id`: it needs no vault access)."""
        return self._ids.user_identity.client_id

    @property
    def client_secret(self) -> str:
        """The app's current client secret (what the vault holds under `SECRET_NAME`)."""
        directory = self.world.directory
        with directory.lock:
            return directory.secrets[-1].value

    @property
    def certificate_pem(self) -> str:
        """The app's certificate and private key as PEM (also in the vault as `CERT_PEM_NAME`)."""
        return self._credentials.cert.pem

    @property
    def certificate_thumbprint(self) -> str:
        """SHA-1 thumbprint (hex) of the app's certificate, as MSAL's PEM credential wants it."""
        return self._credentials.cert.thumbprint

    @property
    def app_id_uri(self) -> str:
        """The app's Application ID URI, `api://<client_id>`: the audience of caller tokens."""
        return delegated.app_id_uri(self.client_id)

    @property
    def caller_client_id(self) -> str:
        """Client id of the (front-end) app whose tokens callers send to this web API."""
        return self.world.users.caller_client_id

    @property
    def api_client_id(self) -> str:
        """Client id of the seeded "SOC automation" app, which calls the Defender Bridge API
        with client credentials (`api_client_secret`); see `emulator.approles`."""
        return self._ids.automation_client_id

    @property
    def api_client_secret(self) -> str:
        """Client secret of the "SOC automation" app (random per run)."""
        return self._credentials.automation_secret

    @property
    def logic_app_identity_client_id(self) -> str:
        """Client id of the Logic App's user-assigned identity (`id-logic-app`), which holds app
        roles on the Defender Bridge API; the managed-identity endpoint serves it."""
        return self._ids.logic_identity.client_id

    # ------------------------------------------------------------------ the services

    def entra_service(self) -> entra.EntraService:
        """Entra ID (discovery, keys, token endpoint, managed identity) over the live state."""
        return self.delegated_service().entra

    def delegated_service(self) -> delegated.DelegatedService:
        """The user flows (device code, on-behalf-of, refresh) over the live state, with the
        Entra service they extend."""
        world = self.world
        service = entra.EntraService(
            world.directory,
            self._issuer,
            self.clock,
            self._entra_settings(),
            self.stats.record_token,
            self.identity_header,
        )
        users = delegated.DelegatedService(service, world.users)
        service.grants = users.grants()
        return users

    def keyvault_service(self, vault_url: str) -> keyvault.KeyVaultService:
        """The vault, answering as `vault_url` (the base of the secret ids it returns)."""
        return keyvault.KeyVaultService(self.world.vault, self._issuer, self.clock, vault_url)

    def defender_service(self) -> defender.DefenderService:
        """The Defender (legacy) and Graph security APIs over the live incident store."""
        return defender.DefenderService(
            self.world.store,
            self._issuer,
            self.clock,
            self.limiter,
            self.behaviour,
            hunting_limits=self._hunting_limits,
            cpu=self.hunting_cpu,
        )

    def token_tenant(self, token: str | None) -> str | None:
        """The tenant of a Defender or Graph token if it is one of ours and valid, else None
        (how faults limited to some tenants and their stats find a request's tenant)."""
        if token is None:
            return None
        try:
            audiences = entra.LEGACY_RESOURCES + entra.GRAPH_RESOURCES
            return self._issuer.verify(token, audiences).tenant_id
        except entra.TokenError:
            return None

    def _entra_settings(self) -> entra.EntraSettings:
        config, runtime = self.config, self._lifetimes
        return entra.EntraSettings(
            token_lifetime=runtime.get("lifetime", config.token_lifetime),
            mi_token_lifetime=runtime.get("mi_lifetime", config.mi_token_lifetime),
            refresh_token_lifetime=runtime.get("refresh_lifetime", config.refresh_token_lifetime),
            device_code_lifetime=runtime.get("device_code_lifetime", config.device_code_lifetime),
            device_code_interval=config.device_code_interval,
        )

    # ------------------------------------------------------------------ incidents

    def truth(self, tenant: str, api: ApiName, *, visible: bool = False) -> list[dict[str, Any]]:
        """Every incident of `tenant` as `api` renders it (Graph with alerts), newest first:
        the latest versions, or with `visible` the versions the APIs show now (they differ
        only under late arrival). KeyError for an unknown tenant."""
        store = self.world.store
        if tenant not in store:
            raise KeyError(f"unknown tenant '{tenant}'")
        return defender.truth(store, tenant, api, self.clock() if visible else None)

    def simulate_activity(
        self, tenant: str, *, create: int = 0, update: int = 0, merge: int = 0
    ) -> data.ActivityResult:
        """Simulated SOC activity in `tenant`: new incidents, updates that move lastUpdateTime,
        merges that set redirectIncidentId. KeyError for an unknown tenant."""
        store = self.world.store
        if tenant not in store:
            raise KeyError(f"unknown tenant '{tenant}'")
        return store.simulate(tenant, self.clock(), create=create, update=update, merge=merge)

    # ------------------------------------------------------------------ traffic

    def configure_faults(self, config: faults.FaultConfig) -> faults.FaultConfig:
        """Inject faults on the Defender and Graph endpoints (`FaultConfig()` stops them)."""
        self.faults.configure(config)
        return self.faults.config

    def set_quota(self, family: str, limits: tuple[ratelimit.Limit, ...]) -> None:
        """Replace one API family's per-tenant quotas (`()`: unlimited)."""
        self.limiter.set_limits(family, limits)

    def quotas(self) -> dict[str, list[dict[str, float]]]:
        """The quotas in force, by family."""
        return self.limiter.quotas()

    def set_behaviour(self, **changes: Any) -> behaviour.Settings:
        """Change behaviours at run time (the keys of `EmulatorConfig`'s behaviour fields);
        raises ValueError for a bad value. `reset()` restores the configured ones."""
        settings = self.behaviour.update(changes, self.tenant_ids)
        if self._world is not None:
            self._world.store.set_late_arrival(settings.late_arrival_seconds, self.clock())
        return settings

    # ------------------------------------------------------------------ the app's credential

    def set_consent(
        self,
        tenant: str,
        *,
        consent: bool = True,
        roles: Mapping[str, Sequence[str]] | None = None,
    ) -> AppConsent:
        """Grant (with the default roles, then `roles` per family) or revoke the app's consent
        in `tenant`; a revoked tenant answers `AADSTS7000229`. KeyError for an unknown tenant,
        ValueError for a family that is not one of `CONSENT_FAMILIES`."""
        directory = self.world.directory
        if tenant not in directory.tenants:
            raise KeyError(f"unknown tenant '{tenant}'")
        unknown = set(roles or {}) - set(CONSENT_FAMILIES)
        if unknown:
            raise ValueError(
                f"'roles' must map some of {list(CONSENT_FAMILIES)} to lists of role names"
            )
        with directory.lock:
            if not consent:
                directory.consents.pop(tenant, None)
            else:
                granted = directory.consents.setdefault(tenant, dict(entra.DEFAULT_ROLES))
                for family, names in (roles or {}).items():
                    granted[family] = tuple(names)
            now = directory.consents.get(tenant)
        return AppConsent(tenant, now is not None, dict(now or {}))

    def rotate_client_secret(self, *, revoke_old: bool, expire_old: bool) -> dict[str, Any]:
        """New client secret in Entra and as a new vault version; optionally revoke (or expire)
        the old ones. Returns what `POST /_emulator/keyvault/rotate` answers."""
        world = self.world
        now = self.clock()
        lifetime = timedelta(days=self.config.secret_lifetime_days)
        value = state.new_secret_value()
        with world.directory.lock, world.vault.lock:
            old = list(world.directory.secrets)
            key_id = entra.rotate_secret(world.directory, value, now, lifetime)
            if revoke_old:
                entra.revoke_secrets(world.directory, key_id)
            elif expire_old:
                world.directory.secrets[:] = [
                    s if s.key_id == key_id else dataclasses.replace(s, expires=now)
                    for s in world.directory.secrets
                ]
            version = world.vault.set_secret(state.SECRET_NAME, value, now, now + lifetime)
        return {
            "name": state.SECRET_NAME,
            "version": version.version,
            "key_id": key_id,
            "revoked": [s.key_id for s in old] if revoke_old else [],
            "expired": [s.key_id for s in old] if expire_old and not revoke_old else [],
        }

    # ------------------------------------------------------------------ tokens

    def set_token_lifetimes(self, **lifetimes: int) -> dict[str, int]:
        """Runtime lifetimes in seconds: `lifetime` (access tokens of every grant),
        `mi_lifetime`, `refresh_lifetime`, `device_code_lifetime`. Returns the current values;
        `reset()` restores the configured ones."""
        unknown = set(lifetimes) - LIFETIMES
        if unknown:
            raise ValueError(f"unknown lifetime(s): {', '.join(sorted(unknown))}")
        for name, value in lifetimes.items():
            self._lifetimes[name] = delegated.parse_lifetime(value, name)
        return self.token_lifetimes()

    def token_lifetimes(self) -> dict[str, int]:
        """The lifetimes in force (seconds)."""
        settings = self._entra_settings()
        return {
            "lifetime": settings.token_lifetime,
            "mi_lifetime": settings.mi_token_lifetime,
            "refresh_lifetime": settings.refresh_token_lifetime,
            "device_code_lifetime": settings.device_code_lifetime,
            "device_code_interval": settings.device_code_interval,
        }

    def sign_claims(self, claims: Mapping[str, Any]) -> str:
        """Sign arbitrary claims with the emulator's Entra key (the one its JWKS publishes).
        For tests that need a token Entra itself would never issue (another issuer, a
        not-yet-valid one); no endpoint exposes this."""
        return self._issuer.issue(claims)

    # ------------------------------------------------------------------ users

    @property
    def users(self) -> tuple[delegated.User, ...]:
        """Every seeded user of every tenant (home first): per tenant `analyst@<domain>` (all
        Defender and Graph security delegated permissions consented), `reader@<domain>`
        (read-only ones) and `newhire@<domain>` (nothing consented)."""
        users_state = self.world.users
        with users_state.lock:
            users = list(users_state.users.values())
        order = {tid: i for i, tid in enumerate(self.tenant_ids)}
        return tuple(sorted(users, key=lambda u: (order.get(u.tenant_id, 0), u.upn)))

    def user(self, selector: str, tenant: str | None = None) -> delegated.User:
        """A user by UPN or object id, or a UPN's nickname (`analyst`) in `tenant` (default:
        the home tenant). Raises KeyError if there is none."""
        world = self.world
        with world.users.lock:
            found = world.users.find_user(selector)
            if found is None and "@" not in selector:
                tid = tenant or self.home_tenant_id
                domain = world.directory.tenants[tid].domain
                found = world.users.find_user(f"{selector}@{domain}", tid)
        if found is None:
            raise KeyError(selector)
        return found

    def caller_token(
        self,
        user: str | delegated.User,
        *,
        audience: str | None = None,
        lifetime: int | None = None,
        expired: bool = False,
    ) -> str:
        """An access token `user` got for `audience` (default `app_id_uri`): the incoming
        assertion of an on-behalf-of exchange. See `POST /_emulator/users/token`."""
        target = user if isinstance(user, delegated.User) else self.user(user)
        return self.issue_caller_token(
            target, audience=audience, lifetime=lifetime, expired=expired
        ).access_token

    def issue_caller_token(
        self,
        user: delegated.User,
        *,
        audience: str | None = None,
        lifetime: int | None = None,
        expired: bool = False,
    ) -> IssuedToken:
        """`caller_token` with its expiry and audience (what the admin API answers)."""
        token, expires_on = self.delegated_service().caller_token(
            user, audience=audience, lifetime=lifetime, expired=expired
        )
        return IssuedToken(token, expires_on, (audience or self.app_id_uri).rstrip("/"))

    def set_user_consent(
        self, user: delegated.User, permissions: Mapping[str, Any]
    ) -> delegated.User:
        """Replace some families of `user`'s delegated consent to the app (`[]`: none);
        ValueError for an unknown family or permission. Returns the updated user."""
        return delegated.set_consent(self.world.users, user, permissions)

    # ------------------------------------------------------------------ device codes

    def device_codes(self) -> list[dict[str, Any]]:
        """The outstanding device codes (never the device code itself)."""
        users_state = self.world.users
        with users_state.lock:
            return [c.to_json() for c in users_state.device_codes.values()]

    def device_code(self, user_code: str) -> dict[str, Any] | None:
        """One device code by its user code (case-insensitive), or None."""
        users_state = self.world.users
        with users_state.lock:
            code = users_state.by_user_code(user_code)
            return code.to_json() if code else None

    def decide_device_code(self, user_code: str, user: str | None, *, approve: bool = True) -> None:
        """Approve (as `user`, UPN or object id) or decline a pending device code, as the user
        would on the verification page. KeyError for an unknown code, ValueError for a code
        already decided or a user not in the code's tenant."""
        users_state = self.world.users
        with users_state.lock:
            code = users_state.by_user_code(user_code)
            if code is None:
                raise KeyError(f"no device code with user code '{user_code}'")
            if code.status != "pending":
                raise ValueError(f"the device code '{code.user_code}' is already {code.status}")
            if approve:
                try:
                    found = self.user(user or "", code.tenant_id)
                except KeyError:
                    found = None
                if found is None or found.tenant_id != code.tenant_id:
                    raise ValueError(f"no user '{user}' in tenant {code.tenant_id}")
                code.user_oid = found.oid
            code.status = "approved" if approve else "declined"

    def auto_approve_device_codes(self, user: str | None, *, approve: bool = True) -> None:
        """From now on approve (or decline) every new device code of `user`'s tenant as that
        user (selected as by `user()`); `None` turns auto-approval off in every tenant."""
        users_state = self.world.users
        with users_state.lock:
            if user is None:
                users_state.auto.clear()
                return
            found = self.user(user)
            users_state.auto[found.tenant_id] = (found.oid, approve)

    def auto_approvals(self) -> list[dict[str, Any]]:
        """The auto-approval setting per tenant: `{tenant, user, action}`."""
        users_state = self.world.users
        with users_state.lock:
            return [
                {"tenant": tid, "user": oid, "action": "approve" if ok else "deny"}
                for tid, (oid, ok) in sorted(users_state.auto.items())
            ]

    # ------------------------------------------------------------------ the Defender Bridge API

    def api_assignments(self) -> dict[str, Any]:
        """The API's identifiers, app roles, client apps and role assignments."""
        world = self.world
        return approles.assignments(world.directory, world.users)

    def api_principal(self, selector: str) -> approles.Principal:
        """A principal (user, API client app, managed identity) by object id, client id, UPN,
        identity name or home-tenant nickname. Raises KeyError if there is none."""
        world = self.world
        with world.directory.lock, world.users.lock:
            found = approles.find(world.directory, world.users, selector)
        if found is None:
            raise KeyError(selector)
        return found

    def api_roles_of(self, principal: approles.Principal) -> tuple[str, ...]:
        """The principal's app roles on the Defender Bridge API."""
        directory = self.world.directory
        with directory.lock:
            return directory.api_roles.get(principal.object_id, ())

    def set_api_roles(self, principal: str, roles: Any) -> dict[str, Any]:
        """Replace a principal's app roles on the Defender Bridge API (ValueError for a bad
        value, KeyError for an unknown principal). `reset()` restores the seeded ones."""
        found = self.api_principal(principal)
        return dict(approles.set_roles(self.world.directory, found, approles.parse_roles(roles)))

    def api_token(
        self, principal: str, *, lifetime: int | None = None, expired: bool = False
    ) -> str:
        """The token `principal` would get from Entra for the Defender Bridge API (audience
        `app_id_uri`), with its app roles. See `POST /_emulator/api/token`."""
        found = self.api_principal(principal)
        return self.issue_api_token(found, lifetime=lifetime, expired=expired).access_token

    def issue_api_token(
        self, principal: approles.Principal, *, lifetime: int | None = None, expired: bool = False
    ) -> IssuedToken:
        """`api_token` with its expiry and audience (what the admin API answers)."""
        token, expires_on = approles.token(
            self.delegated_service(), principal, lifetime=lifetime, expired=expired
        )
        return IssuedToken(token, expires_on, self.app_id_uri)
