"""The local cloud: one HTTPS port for Entra ID, Key Vault, Defender, Graph and the admin API,
plus a plain-HTTP port for the App Service managed-identity endpoint.

Usage (tests and the demo)::

    with Emulator(EmulatorConfig(seed=1)) as emu:
        os.environ.update(emu.app_settings())

Services are routed by path on the HTTPS port, so `DEFENDER_AUTHORITY_URL`,
`DEFENDER_LEGACY_API_URL`, `DEFENDER_GRAPH_API_URL` and `KEY_VAULT_URL` all point at `emu.url`.
A trustme CA signs the server certificate for both `127.0.0.1` and `localhost`, so tests can use
`localhost` as "another host" (e.g. to check a client refuses to follow a foreign nextLink).

This module starts, stops, seeds and routes; the admin API's handlers are in `emulator.admin`,
each service's in its own module (`entra`, `delegated`, `keyvault`, `defender`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import logging
import random
import re
import secrets
import shlex
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from emulator import (
    admin,
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
    stats,
)
from emulator.http import Request, Response, json_response
from emulator.model import Clock, format_time, utc_now
from emulator.store import IncidentStore

logger = logging.getLogger(__name__)

Handler = Callable[[Request, "re.Match[str]"], Response]

SECRET_NAME = "defender-client-secret"
# Key Vault exposes a certificate's key and chain as a secret of the same name (PEM or PKCS#12).
CERT_PEM_NAME = "defender-client-cert"
CERT_PFX_NAME = "defender-client-cert-pfx"
_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the local cloud is seeded and bound. Every field has a default."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    mi_port: int = 0
    seed: int = 1
    home_incidents: int = 260
    customer_tenants: int = 2
    customer_incidents: int = 40
    state_dir: Path | None = None  # where the CA PEM is written; default: a temporary directory
    token_lifetime: int = 3599  # seconds, Entra access tokens (client credentials)
    mi_token_lifetime: int = 86399  # seconds, managed-identity tokens
    secret_lifetime_days: int = 180  # expiry of the seeded client secret (Entra and Key Vault)
    request_log_size: int = 5000
    # User flows (defender-api.md §3.4). Entra's device-code interval is 5 s; 1 s keeps tests
    # fast. MSAL sleeps `interval` whole seconds between polls and checks for expiry only while
    # sleeping, so the interval must be at least 1.
    device_code_interval: int = 1
    device_code_lifetime: int = 900  # seconds (Entra: 15 minutes)
    refresh_token_lifetime: int = 90 * 86400  # seconds (Entra: 90 days of inactivity)
    # Approve every new device code as this user (UPN or object id); None = wait for the admin
    # API (`/_emulator/devicecode/approve`).
    device_code_auto_user: str | None = None
    # Per-family request quotas ("incidents", "hunting", "alerts"); missing families keep
    # Microsoft's documented defaults (see emulator.ratelimit.DEFAULT_QUOTAS).
    quotas: Mapping[str, tuple[ratelimit.Limit, ...]] = field(default_factory=dict)
    # Advanced hunting limits (emulator.hunting; documented values as defaults). Tests shorten
    # the 3-minute timeout and make queries slow with a simulated run time (or a
    # `// emulator:latency=<s>` comment in the query); a CPU allocation per tenant and cycle
    # turns on the CPU-quota 429 (None: off, since real allocations depend on tenant size).
    hunting_timeout_seconds: float = hunting.TIMEOUT_SECONDS
    hunting_latency_seconds: float = 0.0
    hunting_max_rows: int = hunting.MAX_ROWS
    hunting_max_result_bytes: int = hunting.MAX_RESULT_BYTES
    hunting_cpu_seconds: float | None = None
    hunting_cpu_cycle_seconds: float = 900.0
    # Behaviours (emulator.behaviour; also `GET|POST /_emulator/behaviour`, restored by reset).
    # The defaults are the strict observed behaviour.
    order: behaviour.Order = "newest"  # or "arbitrary": a seeded order that ignores time
    order_seed: int = 0
    # which Graph list pages carry @odata.count when $count=true: "every", "first" or "none"
    count_pages: behaviour.CountPages = "every"
    expand_failure_tenants: tuple[str, ...] = ()  # tenant ids, or "*" for all
    late_arrival_seconds: float = 0.0
    # {"tenant", "every", "create", "update", "merge"} (or a behaviour.PagingActivity)
    paging_activity: behaviour.PagingActivity | Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Handler
    faultable: bool = False  # Defender/Graph endpoints only


@dataclass(frozen=True, slots=True)
class _Ids:
    """Deterministic identifiers derived from the seed."""

    tenant_ids: tuple[str, ...]
    client_id: str
    service_principals: tuple[str, ...]
    system_identity: entra.ManagedIdentity
    user_identity: entra.ManagedIdentity
    # a Logic App's user-assigned identity that calls the Defender Bridge API (emulator.approles)
    logic_identity: entra.ManagedIdentity
    automation_client_id: str
    automation_object_id: str


def _derive_ids(config: EmulatorConfig) -> _Ids:
    rng = random.Random(f"emulator-ids:{config.seed}")
    tenants = tuple(data.make_guid(rng) for _ in range(config.customer_tenants + 1))
    client_id = data.make_guid(rng)
    principals = tuple(data.make_guid(rng) for _ in tenants)
    sub = data.make_guid(rng)
    rg = f"/subscriptions/{sub}/resourceGroups/rg-defender-bridge/providers"
    system = entra.ManagedIdentity(
        data.make_guid(rng),
        data.make_guid(rng),
        f"{rg}/Microsoft.Web/sites/func-defender-bridge",
        system_assigned=True,
    )
    user = entra.ManagedIdentity(
        data.make_guid(rng),
        data.make_guid(rng),
        f"{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/id-no-vault-access",
        system_assigned=False,
    )
    # drawn after the others, so the identifiers above stay what they were for a seed
    logic = entra.ManagedIdentity(
        data.make_guid(rng),
        data.make_guid(rng),
        f"{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/id-logic-app",
        system_assigned=False,
    )
    automation = (data.make_guid(rng), data.make_guid(rng))
    return _Ids(tenants, client_id, principals, system, user, logic, *automation)


def _secret_value() -> str:
    # Entra client secrets look like `abc8Q~<34 chars>`; the value is random per run.
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~"
    body = "".join(secrets.choice(alphabet) for _ in range(34))
    return f"{secrets.token_hex(2)[:3]}8Q~{body}"


@dataclass(frozen=True, slots=True)
class _AppCert:
    """The app's self-signed certificate (registered in Entra, stored in Key Vault)."""

    pem: str  # private key + certificate, as Key Vault returns a PEM certificate secret
    pfx_b64: str  # base64 PKCS#12, as Key Vault returns a PFX certificate secret
    certificate: x509.Certificate

    @staticmethod
    def generate(client_id: str) -> _AppCert:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"defender-bridge-{client_id}")])
        start = datetime(2026, 1, 1, tzinfo=UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        pfx = pkcs12.serialize_key_and_certificates(
            b"defender-bridge", key, cert, None, serialization.NoEncryption()
        )
        return _AppCert(key_pem + cert_pem, base64.b64encode(pfx).decode(), cert)

    def registration(self) -> entra.AppCertificate:
        der = self.certificate.public_bytes(serialization.Encoding.DER)

        def b64url(digest: bytes) -> str:
            return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

        return entra.AppCertificate(
            x5t=b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
            x5t_s256=b64url(hashlib.sha256(der).digest()),
            public_key=self.certificate.public_key(),
        )


@dataclass
class World:
    """The emulator's live state; `reset()` replaces it with a freshly seeded one."""

    directory: entra.Directory
    vault: keyvault.Vault
    store: IncidentStore
    seeded_at: datetime
    users: delegated.DelegatedState
    lock: threading.RLock = field(default_factory=threading.RLock)


class Emulator:
    """Entra ID, managed identity, Key Vault, Defender and Graph security, on local ports."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock = utc_now) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self._ids = _derive_ids(self.config)
        self.identity_header = secrets.token_hex(16)
        self._initial_secret = _secret_value()
        self._automation_secret = _secret_value()
        self._cert = _AppCert.generate(self._ids.client_id)
        self._issuer = entra.TokenIssuer(clock)
        self.stats = stats.Stats(self.config.request_log_size)
        self.faults = faults.FaultInjector()
        self.limiter = ratelimit.RateLimiter(self.config.quotas)
        self.hunting_cpu = hunting.CpuMeter()
        self.behaviour = behaviour.Behaviour(self._configured_behaviour())
        if self.config.device_code_interval < 1:
            raise ValueError(
                "device_code_interval must be at least 1 second (MSAL busy-polls at 0)"
            )
        # Runtime token lifetimes (`/_emulator/tokens`); reset() restores the config values.
        self._lifetimes: dict[str, int] = {}
        self._world: World | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_path: Path | None = None
        self._port = 0
        self._mi_port = 0
        self._admin = admin.AdminApi(self)
        self._routes = self._build_routes()
        self._mi_routes = (
            _Route("GET", re.compile(r"^/msi/token/?$", re.IGNORECASE), "mi.token", self._mi_token),
        )

    # ------------------------------------------------------------------ public API

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
        world = self._require_world()
        with world.directory.lock:
            return world.directory.secrets[-1].value

    @property
    def certificate_pem(self) -> str:
        """The app's certificate and private key as PEM (also in the vault as `CERT_PEM_NAME`)."""
        return self._cert.pem

    @property
    def certificate_thumbprint(self) -> str:
        """SHA-1 thumbprint (hex) of the app's certificate, as MSAL's PEM credential wants it."""
        der = self._cert.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()

    @property
    def url(self) -> str:
        """`https://127.0.0.1:<port>` (or the configured host)."""
        self._require_started()
        return f"https://{self.config.host}:{self._port}"

    @property
    def mi_url(self) -> str:
        """The managed-identity endpoint, `http://127.0.0.1:<mi_port>/msi/token`."""
        self._require_started()
        return f"http://{self.config.host}:{self._mi_port}/msi/token"

    @property
    def ca_path(self) -> Path:
        """Path of the CA certificate PEM that signed the server certificate."""
        if self._ca_path is None:
            raise RuntimeError("the emulator is not started")
        return self._ca_path

    def app_settings(self) -> dict[str, str]:
        """The app settings that point the Function app at this emulator."""
        return {
            "DEFENDER_TENANT_ID": self.home_tenant_id,
            "DEFENDER_CLIENT_ID": self.client_id,
            "INGEST_TENANTS": ",".join(self.tenant_ids),
            "KEY_VAULT_URL": self.url,
            "DEFENDER_CLIENT_SECRET_NAME": SECRET_NAME,
            "IDENTITY_ENDPOINT": self.mi_url,
            "IDENTITY_HEADER": self.identity_header,
            "DEFENDER_AUTHORITY_URL": self.url,
            "DEFENDER_LEGACY_API_URL": self.url,
            "DEFENDER_GRAPH_API_URL": self.url,
            "EMULATOR_CA_CERT": str(self.ca_path),
        }

    # ------------------------------------------------------------------ users (public API)

    @property
    def app_id_uri(self) -> str:
        """The app's Application ID URI, `api://<client_id>`: the audience of caller tokens."""
        return delegated.app_id_uri(self.client_id)

    @property
    def caller_client_id(self) -> str:
        """Client id of the (front-end) app whose tokens callers send to this web API."""
        return self._require_world().users.caller_client_id

    @property
    def users(self) -> tuple[delegated.User, ...]:
        """Every seeded user of every tenant (home first): per tenant `analyst@<domain>` (all
        Defender and Graph security delegated permissions consented), `reader@<domain>`
        (read-only ones) and `newhire@<domain>` (nothing consented)."""
        state = self._require_world().users
        with state.lock:
            users = list(state.users.values())
        order = {tid: i for i, tid in enumerate(self.tenant_ids)}
        return tuple(sorted(users, key=lambda u: (order.get(u.tenant_id, 0), u.upn)))

    def user(self, selector: str, tenant: str | None = None) -> delegated.User:
        """A user by UPN or object id, or a UPN's nickname (`analyst`) in `tenant` (default:
        the home tenant). Raises KeyError if there is none."""
        state = self._require_world().users
        with state.lock:
            found = state.find_user(selector)
            if found is None and "@" not in selector:
                tid = tenant or self.home_tenant_id
                domain = self._require_world().directory.tenants[tid].domain
                found = state.find_user(f"{selector}@{domain}", tid)
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
        token, _ = self._delegated().caller_token(
            target, audience=audience, lifetime=lifetime, expired=expired
        )
        return token

    # ------------------------------------------------------------------ the Defender Bridge API

    @property
    def api_client_id(self) -> str:
        """Client id of the seeded "SOC automation" app, which calls the Defender Bridge API
        with client credentials (`api_client_secret`); see `emulator.approles`."""
        return self._ids.automation_client_id

    @property
    def api_client_secret(self) -> str:
        """Client secret of the "SOC automation" app (random per run)."""
        return self._automation_secret

    @property
    def logic_app_identity_client_id(self) -> str:
        """Client id of the Logic App's user-assigned identity (`id-logic-app`), which holds app
        roles on the Defender Bridge API; the managed-identity endpoint serves it."""
        return self._ids.logic_identity.client_id

    def api_principal(self, selector: str) -> approles.Principal:
        """A principal (user, API client app, managed identity) by object id, client id, UPN,
        identity name or home-tenant nickname. Raises KeyError if there is none."""
        world = self._require_world()
        with world.directory.lock, world.users.lock:
            found = approles.find(world.directory, world.users, selector)
        if found is None:
            raise KeyError(selector)
        return found

    def api_token(
        self, principal: str, *, lifetime: int | None = None, expired: bool = False
    ) -> str:
        """The token `principal` would get from Entra for the Defender Bridge API (audience
        `app_id_uri`), with its app roles. See `POST /_emulator/api/token`."""
        token, _ = approles.token(
            self._delegated(), self.api_principal(principal), lifetime=lifetime, expired=expired
        )
        return token

    def set_api_roles(self, principal: str, roles: Any) -> dict[str, Any]:
        """Replace a principal's app roles on the Defender Bridge API (ValueError for a bad
        value, KeyError for an unknown principal). `reset()` restores the seeded ones."""
        found = self.api_principal(principal)
        return dict(approles.set_roles(self.world.directory, found, approles.parse_roles(roles)))

    def sign_claims(self, claims: Mapping[str, Any]) -> str:
        """Sign arbitrary claims with the emulator's Entra key (the one its JWKS publishes).
        For tests that need a token Entra itself would never issue (another issuer, a
        not-yet-valid one); no endpoint exposes this."""
        return self._issuer.issue(claims)

    def decide_device_code(self, user_code: str, user: str | None, *, approve: bool = True) -> None:
        """Approve (as `user`, UPN or object id) or decline a pending device code, as the user
        would on the verification page. Raises KeyError / ValueError like the admin API's 400."""
        state = self._require_world().users
        with state.lock:
            code = state.by_user_code(user_code)
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
        state = self._require_world().users
        with state.lock:
            if user is None:
                state.auto.clear()
                return
            found = self.user(user)
            state.auto[found.tenant_id] = (found.oid, approve)

    def set_token_lifetimes(self, **lifetimes: int) -> dict[str, int]:
        """Runtime lifetimes in seconds: `lifetime` (access tokens of every grant),
        `mi_lifetime`, `refresh_lifetime`, `device_code_lifetime`. Returns the current values;
        `reset()` restores the configured ones."""
        allowed = {"lifetime", "mi_lifetime", "refresh_lifetime", "device_code_lifetime"}
        unknown = set(lifetimes) - allowed
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

    def rotate_client_secret(self, *, revoke_old: bool, expire_old: bool) -> dict[str, Any]:
        """New client secret in Entra and as a new vault version; optionally revoke (or expire)
        the old ones. Returns what `POST /_emulator/keyvault/rotate` answers."""
        world = self._require_world()
        now = self.clock()
        lifetime = timedelta(days=self.config.secret_lifetime_days)
        value = _secret_value()
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
            version = world.vault.set_secret(SECRET_NAME, value, now, now + lifetime)
        return {
            "name": SECRET_NAME,
            "version": version.version,
            "key_id": key_id,
            "revoked": [s.key_id for s in old] if revoke_old else [],
            "expired": [s.key_id for s in old] if expire_old and not revoke_old else [],
        }

    @property
    def world(self) -> World:
        """The live state (directory, vault, incident store, users), for the admin API."""
        return self._require_world()

    def delegated_service(self) -> delegated.DelegatedService:
        """The user flows (device code, on-behalf-of) over the live state."""
        return self._delegated()

    def _configured_behaviour(self) -> behaviour.Settings:
        config = self.config
        values = {
            "order": config.order,
            "order_seed": config.order_seed,
            "count_pages": config.count_pages,
            "expand_failure_tenants": list(config.expand_failure_tenants),
            "late_arrival_seconds": config.late_arrival_seconds,
            "paging_activity": config.paging_activity,
        }
        try:
            return behaviour.merge(behaviour.Settings(), values, self.tenant_ids)
        except behaviour.BehaviourError as exc:
            raise ValueError(f"EmulatorConfig: {exc}") from exc

    def set_behaviour(self, **changes: Any) -> behaviour.Settings:
        """Change behaviours at run time (the keys of `EmulatorConfig`'s behaviour fields);
        raises ValueError for a bad value. `reset()` restores the configured ones."""
        settings = self.behaviour.update(changes, self.tenant_ids)
        world = self._world
        if world is not None:
            world.store.set_late_arrival(settings.late_arrival_seconds, self.clock())
        return settings

    def start(self) -> Emulator:
        """Generate the CA and certificate, seed the data, bind both ports, start serving."""
        if self._servers:
            raise RuntimeError("the emulator is already started")
        state_dir = self.config.state_dir
        if state_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="defender-emulator-")
            state_dir = Path(self._tempdir.name)
        state_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Defender Bridge emulator")
        cert = ca.issue_cert(self.config.host, "127.0.0.1", "localhost")
        self._ca_path = state_dir / "emulator-ca.pem"
        ca.cert_pem.write_to_path(str(self._ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._world = self._seed(self.clock())
        https = _Server((self.config.host, self.config.port), self, self._routes, context)
        mi = _Server((self.config.host, self.config.mi_port), self, self._mi_routes, None)
        self._servers = [https, mi]
        self._port = https.server_address[1]
        self._mi_port = mi.server_address[1]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        logger.info("emulator listening on %s (managed identity on %s)", self.url, self.mi_url)
        return self

    def stop(self) -> None:
        """Stop serving and remove the temporary state directory (if the emulator made it)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the seeded state; clears stats and faults."""
        world = self._require_world()
        self.behaviour = behaviour.Behaviour(self._configured_behaviour())
        self._world = self._seed(world.seeded_at)
        self._lifetimes.clear()
        self.stats.clear()
        self.faults.configure(faults.FaultConfig())
        self.limiter.reset()
        self.hunting_cpu.reset()

    # ------------------------------------------------------------------ seeding

    def _seed(self, now: datetime) -> World:
        config, ids = self.config, self._ids
        tenants: dict[str, entra.Tenant] = {}
        for index, tid in enumerate(ids.tenant_ids):
            org = data.org_name(index)
            tenants[tid] = entra.Tenant(tid, f"{org}.onmicrosoft.com", org.capitalize())
        secret_created = now - timedelta(days=30)
        secret = entra.ClientSecret(
            "3f1c2a9e-0000-4000-8000-000000000001",
            self._initial_secret,
            secret_created,
            secret_created + timedelta(days=config.secret_lifetime_days),
        )
        directory = entra.Directory(
            tenants=tenants,
            home_tenant_id=ids.tenant_ids[0],
            client_id=ids.client_id,
            app_display_name="Defender Bridge",
            secrets=[secret],
            consents={tid: dict(entra.DEFAULT_ROLES) for tid in ids.tenant_ids},
            service_principals=dict(zip(ids.tenant_ids, ids.service_principals, strict=True)),
            identities={
                ids.system_identity.client_id: ids.system_identity,
                ids.user_identity.client_id: ids.user_identity,
                ids.logic_identity.client_id: ids.logic_identity,
            },
            certificates=[self._cert.registration()],
            # Managed identity as a federated credential of the app (no secret at all): only a
            # user-assigned identity can be one (entra.EntraService._check_assertion).
            federated=[
                entra.FederatedCredential(
                    entra.federated_issuer(ids.tenant_ids[0]), ids.user_identity.principal_id
                )
            ],
        )
        vault = keyvault.Vault("defender-bridge-kv", "westeurope", ids.tenant_ids[0])
        vault.set_secret(SECRET_NAME, secret.value, secret.created, secret.expires)
        cert_expiry = self._cert.certificate.not_valid_after_utc
        vault.set_secret(
            CERT_PEM_NAME, self._cert.pem, secret.created, cert_expiry, "application/x-pem-file"
        )
        vault.set_secret(
            CERT_PFX_NAME, self._cert.pfx_b64, secret.created, cert_expiry, "application/x-pkcs12"
        )
        vault.readers.add(ids.system_identity.principal_id)
        store = IncidentStore(
            seed=config.seed,
            seeded_at=now,
            late_arrival_seconds=self.behaviour.settings.late_arrival_seconds,
        )
        for index, tid in enumerate(ids.tenant_ids):
            generator = data.TenantGenerator(tid, index, config.seed)
            count = config.home_incidents if index == 0 else config.customer_incidents
            store.add_tenant(tid, generator, data.seed_incidents(generator, count, now))
        users = delegated.DelegatedState(
            delegated.seed_users(config.seed, tenants), delegated.caller_client_id(config.seed)
        )
        if config.device_code_auto_user:
            selector = config.device_code_auto_user
            user = users.find_user(selector) or users.find_user(
                f"{selector}@{tenants[ids.tenant_ids[0]].domain}", ids.tenant_ids[0]
            )
            if user is None:
                raise ValueError(f"device_code_auto_user: no user '{config.device_code_auto_user}'")
            users.auto[user.tenant_id] = (user.oid, True)
        automation = entra.ApiClient(
            ids.automation_client_id,
            self._automation_secret,
            ids.automation_object_id,
            "SOC automation",
        )
        approles.seed(directory, users, automation, ids.logic_identity)
        return World(directory, vault, store, now, users)

    def _require_world(self) -> World:
        if self._world is None:
            raise RuntimeError("the emulator is not started")
        return self._world

    def _require_started(self) -> None:
        if not self._servers:
            raise RuntimeError("the emulator is not started")

    # ------------------------------------------------------------------ services

    def _entra_settings(self) -> entra.EntraSettings:
        config, runtime = self.config, self._lifetimes
        return entra.EntraSettings(
            token_lifetime=runtime.get("lifetime", config.token_lifetime),
            mi_token_lifetime=runtime.get("mi_lifetime", config.mi_token_lifetime),
            refresh_token_lifetime=runtime.get("refresh_lifetime", config.refresh_token_lifetime),
            device_code_lifetime=runtime.get("device_code_lifetime", config.device_code_lifetime),
            device_code_interval=config.device_code_interval,
        )

    def _entra(self) -> entra.EntraService:
        return self._delegated().entra

    def _delegated(self) -> delegated.DelegatedService:
        world = self._require_world()
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

    def _keyvault(self) -> keyvault.KeyVaultService:
        return keyvault.KeyVaultService(
            self._require_world().vault, self._issuer, self.clock, self.url
        )

    def _defender(self) -> defender.DefenderService:
        c = self.config
        limits = hunting.Limits(
            max_rows=c.hunting_max_rows,
            timeout_seconds=c.hunting_timeout_seconds,
            max_result_bytes=c.hunting_max_result_bytes,
            latency_seconds=c.hunting_latency_seconds,
            cpu_seconds=c.hunting_cpu_seconds,
            cpu_cycle_seconds=c.hunting_cpu_cycle_seconds,
        )
        return defender.DefenderService(
            self._require_world().store,
            self._issuer,
            self.clock,
            self.limiter,
            self.behaviour,
            hunting_limits=limits,
            cpu=self.hunting_cpu,
        )

    def _build_routes(self) -> tuple[_Route, ...]:
        def r(method: str, pattern: str, endpoint: str, handler: Handler, **kw: bool) -> _Route:
            return _Route(method, re.compile(pattern), endpoint, handler, **kw)

        def admin(methods: str, path: str, handler: Handler, name: str = "") -> list[_Route]:
            """`/_emulator/<path>` for each of `methods`; endpoint `admin.<name>`, by default
            the path's first segment."""
            endpoint = "admin." + (name or path.split("/")[0])
            return [r(m, rf"^/_emulator/{path}$", endpoint, handler) for m in methods.split()]

        a = self._admin

        tenant = r"^/(?P<tenant>[^/_][^/]*)"
        return (
            r(
                "GET",
                tenant + r"/v2\.0/\.well-known/openid-configuration$",
                "entra.discovery",
                lambda q, m: self._entra().discovery(q, m["tenant"]),
            ),
            r(
                "GET",
                tenant + r"/discovery/v2\.0/keys$",
                "entra.keys",
                lambda q, m: self._entra().keys(q, m["tenant"]),
            ),
            r(
                "POST",
                tenant + r"/oauth2/v2\.0/token$",
                "entra.token",
                lambda q, m: self._entra().token(q, m["tenant"]),
            ),
            r(
                "POST",
                tenant + r"/oauth2/token$",
                "entra.token",
                lambda q, m: self._entra().token(q, m["tenant"], v1=True),
            ),
            r(
                "POST",
                tenant + r"/oauth2/v2\.0/devicecode$",
                "entra.devicecode",
                lambda q, m: self._delegated().device_authorization(q, m["tenant"]),
            ),
            r("GET", r"^/devicelogin/?$", "entra.devicelogin", self._device_login_page),
            r(
                "GET",
                r"^/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?$",
                "keyvault.secret.get",
                lambda q, m: self._keyvault().get_secret(q, m["name"], m["version"] or ""),
            ),
            r(
                "GET",
                r"^/api/incidents/?$",
                "legacy.incidents.list",
                lambda q, m: self._defender().legacy_list(q),
                faultable=True,
            ),
            r(
                "GET",
                r"^/api/incidents/(?P<id>[^/]+)$",
                "legacy.incidents.get",
                lambda q, m: self._defender().legacy_get(q, m["id"]),
                faultable=True,
            ),
            r(
                "PATCH",
                r"^/api/incidents/(?P<id>[^/]+)$",
                "legacy.incidents.update",
                lambda q, m: self._defender().legacy_update(q, m["id"]),
                faultable=True,
            ),
            r(
                "POST",
                r"^/api/advancedhunting/run$",
                "legacy.hunting.run",
                lambda q, m: self._defender().legacy_hunting(q),
                faultable=True,
            ),
            r(
                "GET",
                r"^/v1\.0/security/incidents/?$",
                "graph.incidents.list",
                lambda q, m: self._defender().graph_list(q),
                faultable=True,
            ),
            r(
                "GET",
                r"^/v1\.0/security/incidents/(?P<id>[^/]+)$",
                "graph.incidents.get",
                lambda q, m: self._defender().graph_get(q, m["id"]),
                faultable=True,
            ),
            r(
                "PATCH",
                r"^/v1\.0/security/incidents/(?P<id>[^/]+)$",
                "graph.incidents.update",
                lambda q, m: self._defender().graph_update(q, m["id"]),
                faultable=True,
            ),
            r(
                "POST",
                r"^/v1\.0/security/incidents/(?P<id>[^/]+)/comments$",
                "graph.incidents.comment",
                lambda q, m: self._defender().graph_comment(q, m["id"]),
                faultable=True,
            ),
            r(
                "GET",
                r"^/v1\.0/security/alerts_v2/?$",
                "graph.alerts.list",
                lambda q, m: self._defender().graph_alerts_list(q),
                faultable=True,
            ),
            r(
                "GET",
                r"^/v1\.0/security/alerts_v2/(?P<id>[^/]+)$",
                "graph.alerts.get",
                lambda q, m: self._defender().graph_alert_get(q, m["id"]),
                faultable=True,
            ),
            r(
                "POST",
                r"^/v1\.0/security/(?:microsoft\.graph\.security\.)?runHuntingQuery$",
                "graph.hunting.run",
                lambda q, m: self._defender().graph_hunting(q),
                faultable=True,
            ),
            *admin("GET", "stats", a.stats),
            *admin("GET", "requests", a.requests),
            *admin("GET", "truth/(?P<tenant>[^/]+)/incidents", a.truth),
            *admin("POST", "activity", a.activity),
            *admin("POST GET", "faults", a.faults),
            *admin("POST", "reset", a.reset),
            *admin("GET", "quotas", a.quotas),
            *admin("POST", "consent", a.consent),
            *admin("POST", "keyvault/rotate", a.rotate, name="rotate"),
            *admin("POST", "quotas", a.quotas),
            *admin("GET", "users", a.users),
            *admin("POST", "users/token", a.user_token),
            *admin("POST", "users/consent", a.user_consent),
            *admin("GET", "devicecode", a.devicecodes),
            *admin("POST", "devicecode/(?P<action>approve|deny)", a.devicecode_decide),
            *admin("POST GET", "devicecode/auto", a.auto),
            *admin("GET POST", "tokens", a.tokens),
            *admin("GET POST", "behaviour", a.behaviour),
            *admin("GET", "api", a.api),
            *admin("POST", "api/roles", a.api_roles, name="api"),
            *admin("POST", "api/token", a.api_token, name="api"),
        )

    def _mi_token(self, request: Request, match: re.Match[str]) -> Response:
        return self._entra().managed_identity_token(request)

    # ------------------------------------------------------------------ device login page

    def _device_login_page(self, request: Request, match: re.Match[str]) -> Response:
        """The `verification_uri` of device codes: a page explaining how to approve here."""
        body = (
            b"<!doctype html><title>Emulator device login</title><p>This is the Defender "
            b"Bridge emulator. There is no sign-in page: approve a code with <code>POST "
            b'/_emulator/devicecode/approve {"user_code": "...", "user": "analyst@..."}</code> '
            b"or decline it with <code>POST /_emulator/devicecode/deny</code>.</p>"
        )
        return Response(200, body, content_type="text/html; charset=utf-8")

    # ------------------------------------------------------------------ faults

    def fault_response(self, kind: str, endpoint: str, request: Request) -> Response:
        """The response of an injected 429/500/503 fault, in the API family's error shape."""
        now = self.clock()
        retry = str(self.faults.config.retry_after)
        graph = endpoint.startswith("graph.")
        if kind == "429":
            headers = [("Retry-After", retry)]
            if graph:
                return defender.graph_error(
                    429, "TooManyRequests", "Too many requests.", request, now, headers=headers
                )
            # Observed legacy 429 body (defender-api.md §1.7, [S12]).
            return defender.legacy_error(
                429,
                "429",
                "API calls quota exceeded! maximum allowed 50 per 00:01:00",
                headers=headers,
            )
        status = int(kind)
        code = "InternalServerError" if status == 500 else "ServiceUnavailable"
        if graph:
            return defender.graph_error(status, code, "Injected fault (emulator).", request, now)
        return defender.legacy_error(status, code, "Injected fault (emulator); retry.")

    def token_tenant(self, request: Request) -> str | None:
        """Tenant of the request's bearer token if it is one of ours (for stats of faults)."""
        token = entra.bearer_token(request)
        if token is None:
            return None
        try:
            audiences = entra.LEGACY_RESOURCES + entra.GRAPH_RESOURCES
            return self._issuer.verify(token, audiences).tenant_id
        except entra.TokenError:
            return None


class _Server(ThreadingHTTPServer):
    """A threading server; with a TLS context the handshake runs in the request thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        emulator: Emulator,
        routes: tuple[_Route, ...],
        context: ssl.SSLContext | None,
    ) -> None:
        self.emulator = emulator
        self.routes = routes
        self.context = context
        self.scheme = "https" if context else "http"
        super().__init__(address, _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(30)
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            _RequestHandler(conn, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects and injected resets are normal here; keep stderr quiet.
        logger.debug("connection error from %s", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DefenderBridgeEmulator/1.0"
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The stdlib logs the request line (path and query); neither carries a token here.
        logger.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        server = self.server
        emulator = server.emulator
        split = urlsplit(self.path)
        bound_host, bound_port = server.server_address[:2]
        host = self.headers.get("Host") or f"{bound_host!s}:{bound_port}"
        request = Request(
            method=self.command,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            base_url=f"{server.scheme}://{host}",
            raw_query=split.query,
        )
        route, match, allowed = _match(server.routes, request)
        if route is None or match is None:
            if allowed:
                response = json_response(
                    405,
                    {
                        "error": {
                            "code": "MethodNotAllowed",
                            "message": f"{request.method} is not allowed here; use "
                            f"{', '.join(sorted(allowed))}.",
                        }
                    },
                )
                self._finish(request, "unknown", response)
                return
            response = json_response(
                404,
                {
                    "error": {
                        "code": "NotFound",
                        "message": f"No emulated endpoint at {request.method} {request.path}.",
                    }
                },
            )
            self._finish(request, "unknown", response)
            return
        kind = (
            emulator.faults.decide(lambda: emulator.token_tenant(request))
            if route.faultable
            else None
        )
        if kind == "reset":
            self._record(request, route.endpoint, emulator.token_tenant(request), 0)
            self._reset_connection()
            return
        if kind in ("429", "500", "503"):
            response = emulator.fault_response(kind, route.endpoint, request)
            response = _with_tenant(response, emulator.token_tenant(request))
            self._finish(request, route.endpoint, response)
            return
        if kind == "slow":
            time.sleep(emulator.faults.config.slow_seconds)
        try:
            response = route.handler(request, match)
        except Exception:  # noqa: BLE001 - a handler bug must become a 500, not a dead socket
            logger.exception("handler for %s failed", route.endpoint)
            response = json_response(
                500, {"error": {"code": "InternalServerError", "message": "emulator bug"}}
            )
        self._finish(request, route.endpoint, response, truncate=kind == "truncated")

    def _record(self, request: Request, endpoint: str, tenant: str | None, status: int) -> None:
        if endpoint.startswith("admin."):
            return  # the admin API is not part of what tests count
        auth = request.header("authorization")
        if auth is None:
            kind = "none"
        elif auth.lower().startswith("bearer "):
            kind = "bearer"
        else:
            kind = "other"
        self.server.emulator.stats.record_request(
            stats.RequestRecord(
                time=format_time(self.server.emulator.clock()),
                method=request.method,
                host=request.header("host") or "",
                path=request.path,
                query=request.raw_query,
                endpoint=endpoint,
                tenant=tenant,
                status=status,
                authorization=kind,
            )
        )

    def _finish(
        self, request: Request, endpoint: str, response: Response, *, truncate: bool = False
    ) -> None:
        self._record(request, endpoint, response.tenant, response.status)
        logger.debug("%s %s -> %s (%s)", request.method, request.path, response.status, endpoint)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.wfile.flush()
            self._reset_connection()
            return
        self.wfile.write(response.body)

    def _reset_connection(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) and no further bytes."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()


def _with_tenant(response: Response, tenant: str | None) -> Response:
    return Response(response.status, response.body, response.headers, response.content_type, tenant)


def _match(
    routes: tuple[_Route, ...], request: Request
) -> tuple[_Route | None, re.Match[str] | None, set[str]]:
    allowed: set[str] = set()
    for route in routes:
        match = route.pattern.match(request.path)
        if match is None:
            continue
        if route.method == request.method:
            return route, match, allowed
        allowed.add(route.method)
    return None, None, allowed


def dumps_settings(settings: Mapping[str, str]) -> str:
    """`export NAME=value` lines, shell-quoted."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
