"""User-context tokens: on behalf of an HTTP caller, and device-code sign-in for the CLI.

On behalf of (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-on-behalf-of-flow):
the caller's Entra access token, issued for this app, is exchanged for a Defender or Graph
token that carries the caller's own permissions. MSAL's ``acquire_token_on_behalf_of`` never
reads the cache, so the exchange result is found again with ``acquire_token_silent`` and the
caller's account (``home_account_id`` = ``<oid>.<tid>``, from the token's claims).

Device code (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code): the
CLI prints Entra's message, polls until the user has signed in, and keeps MSAL's token cache in
``~/.defender-bridge/msal-cache.json``, readable by the owner only (the cache holds a refresh
token, as sensitive as a password).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import msal
import requests

from shared.core.errors import AuthError, CallerTokenError, ConsentError
from shared.credentials.caller import CallerTokenValidator
from shared.credentials.tokens import CONSENT_CODES, AppTokenProvider, error_codes
from shared.credentials.values import CallerClaims, SignedIn
from shared.defender.session import build_session

if TYPE_CHECKING:
    from shared.core.settings import Settings

log = logging.getLogger(__name__)

#: AADSTS codes of an OBO refusal that are the caller token's fault (the caller signs in again):
#: 50013 assertion invalid (signature, audience), 500133 assertion expired, 50079/50076 MFA or
#: Conditional Access requires interaction.
CALLER_CODES = frozenset({50013, 500133, 50079, 50076})


class OnBehalfOfProvider:
    """Exchanges a caller's token for a Defender/Graph token with the caller's permissions.

    Args:
        apps: the application-context provider; its per-tenant app (with the app's credential
            and token cache) performs the exchange, in the caller's tenant.
        validator: checks the caller token (signature, issuer, audience, lifetime) first.
    """

    def __init__(self, apps: AppTokenProvider, *, validator: CallerTokenValidator) -> None:
        self._apps = apps
        self._validator = validator
        self.exchanges = 0

    def token(self, caller_token: str, scope: str, *, claims: CallerClaims | None = None) -> str:
        """A token for ``scope`` acting as the caller (cached per user until it expires).

        ``claims``: what ``validator`` already made of ``caller_token`` (the HTTP API
        validates every caller's token once, on arrival); without them it is validated here.

        Raises:
            CallerTokenError: the caller token is malformed, expired or for another audience,
                or Entra refused it (401 for an HTTP caller).
            ConsentError: the user or an admin has not consented to the delegated permission.
            AuthError: any other refusal.
        """
        # Validated before anything else: the cache below is keyed by the caller's oid/tid and
        # a hit never reaches Entra, so unverified claims would hand one user's token to anyone
        # who forges a token naming them (see shared.credentials.caller).
        if claims is None:
            claims = self._validator.validate(caller_token)
        if not claims.is_user:
            # app-only tokens carry roles, not scp: there is no user to act for
            raise CallerTokenError("the caller's token is an app token, not a user's")
        tenant, account_id = claims.tenant, claims.account_id

        def exchange(app: msal.ConfidentialClientApplication) -> Mapping[str, Any]:
            accounts = [a for a in app.get_accounts() if a.get("home_account_id") == account_id]
            if accounts:
                cached = app.acquire_token_silent([scope], account=accounts[0])
                if cached and "access_token" in cached:
                    return dict(cached)
            self.exchanges += 1
            result: Mapping[str, Any] = app.acquire_token_on_behalf_of(caller_token, [scope])
            return result

        result = self._apps.acquire(tenant, exchange)
        if "access_token" in result:
            return str(result["access_token"])
        codes = error_codes(result)
        if codes & CALLER_CODES or (
            result.get("error") == "invalid_grant" and not codes & CONSENT_CODES
        ):
            first = str(result.get("error_description") or result.get("error")).splitlines()[0]
            raise CallerTokenError(
                f"Entra refused the caller's token for the exchange: {first[:300]}",
                error=str(result.get("error")),
                error_codes=tuple(sorted(codes)),
                correlation_id=_text(result.get("correlation_id")),
                tenant=tenant,
            )
        if codes & {65001}:
            # for a user token, 65001 means this user (or an admin for everyone) has not
            # consented to the delegated permission, not that the app is absent from the tenant
            url = self._apps.consent_url(tenant, scope)
            raise ConsentError(
                f"tenant {tenant}: the signed-in user has not consented to the app's delegated "
                "permissions",
                action=f"the user consents when signing in, or an admin of tenant {tenant} grants "
                f"consent for all users: {url}",
                error=str(result.get("error")),
                error_codes=tuple(sorted(codes)),
                correlation_id=_text(result.get("correlation_id")),
                tenant=tenant,
            )
        raise self._apps.error(tenant, scope, result)


def _text(value: object) -> str | None:
    return str(value) if value else None


# --- device code sign-in for the CLI ------------------------------------------------------------


def default_cache_path() -> Path:
    """``~/.defender-bridge/msal-cache.json``."""
    return Path.home() / ".defender-bridge" / "msal-cache.json"


class PersistentTokenCache:
    """MSAL's serializable cache in a file only its owner can read (dir 0700, file 0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_path()
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()

    def load(self) -> msal.SerializableTokenCache:
        """Read the file if it exists (tightening its permissions if someone loosened them)."""
        with self._lock:
            if self.path.is_file():
                mode = stat.S_IMODE(self.path.stat().st_mode)
                if mode & 0o077:
                    log.warning("token cache %s was readable by others; now 0600", self.path)
                    self.path.chmod(0o600)
                self.cache.deserialize(self.path.read_text(encoding="utf-8"))
            return self.cache

    def save(self) -> None:
        """Write the cache if it changed: to a 0600 temporary file, then renamed into place."""
        with self._lock:
            if not self.cache.has_state_changed:
                return
            directory = self.path.parent
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)
            fd, temp = tempfile.mkstemp(prefix=".msal-cache-", dir=directory)  # created 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(self.cache.serialize())
                os.chmod(temp, 0o600)
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            self.cache.has_state_changed = False


def public_app(
    settings: Settings,
    tenant: str,
    cache: msal.SerializableTokenCache,
    *,
    client_id: str | None = None,
    http_client: requests.Session | None = None,
) -> msal.PublicClientApplication:
    """The CLI's public client for ``tenant`` (the app registration must allow public client
    flows: https://learn.microsoft.com/entra/identity-platform/msal-client-applications).

    Raises:
        AuthError: Entra ID does not know the tenant or cannot be reached.
    """

    kwargs: dict[str, Any] = {
        "authority": f"{settings.defender.authority_url}/{tenant}",
        "token_cache": cache,
        "http_client": http_client or build_session(ca_cert=settings.local.emulator_ca_cert),
    }
    if settings.emulator:
        kwargs["instance_discovery"] = False
    try:
        return msal.PublicClientApplication(client_id or settings.identity.client_id, **kwargs)
    except ValueError as exc:
        raise AuthError(f"Entra ID does not know tenant {tenant}", tenant=tenant) from exc
    except requests.RequestException as exc:
        raise AuthError(
            f"Entra ID could not be reached for tenant {tenant} ({type(exc).__name__})",
            tenant=tenant,
        ) from exc


def device_code_login(
    settings: Settings,
    tenant: str,
    scope: str,
    *,
    out: TextIO,
    cache: PersistentTokenCache | None = None,
    client_id: str | None = None,
    http_client: requests.Session | None = None,
) -> SignedIn:
    """Sign a user in with the device code flow and keep the tokens in the user's cache.

    Prints Entra's instruction (the URL and the user code to type there), then polls.

    Raises:
        AuthError: the flow could not start, was declined, or expired.
    """
    store = cache or PersistentTokenCache()
    app = public_app(settings, tenant, store.load(), client_id=client_id, http_client=http_client)
    try:
        flow = app.initiate_device_flow(scopes=[scope])
    except requests.RequestException as exc:
        raise AuthError(f"Entra ID could not be reached ({type(exc).__name__})") from exc
    if "user_code" not in flow:
        raise _msal_error("the device code sign-in could not start", flow, tenant)
    out.write(str(flow.get("message", "")) + "\n")
    out.flush()
    try:
        result = app.acquire_token_by_device_flow(flow)
    except requests.RequestException as exc:
        raise AuthError(f"Entra ID could not be reached ({type(exc).__name__})") from exc
    if "access_token" not in result:
        raise _msal_error("sign-in failed", result, tenant)
    store.save()
    id_claims = result.get("id_token_claims") or {}
    username = str(id_claims.get("preferred_username") or id_claims.get("name") or "unknown")
    return SignedIn(username=username, tenant=str(id_claims.get("tid") or tenant))


def cli_token_source(
    settings: Settings,
    tenant: str,
    scope: str,
    *,
    cache_path: Path | None = None,
    client_id: str | None = None,
    http_client: requests.Session | None = None,
) -> Callable[[], str]:
    """A zero-argument token source acting as the user who ran ``python -m shared login``.

    For CLI commands given ``--as-user``: pass it where an app token source would go (e.g.
    ``DefenderClient(token=...)``). Tokens come from the persisted cache and are refreshed
    silently with the cached refresh token; the app is built on first call.

    Raises (when called):
        AuthError: nobody is signed in, or the sign-in has expired: run ``login`` again.
    """
    store = PersistentTokenCache(cache_path)
    app: msal.PublicClientApplication | None = None
    lock = threading.Lock()

    def token() -> str:
        nonlocal app
        with lock:
            if app is None:
                app = public_app(
                    settings, tenant, store.load(), client_id=client_id, http_client=http_client
                )
            accounts = app.get_accounts()
            if not accounts:
                raise AuthError(
                    f"nobody is signed in: run 'python -m shared login --tenant {tenant}'",
                    tenant=tenant,
                )
            # Prefer an account homed in this tenant; a guest account works through its
            # refresh token too.
            account = next(
                (a for a in accounts if str(a.get("home_account_id", "")).endswith(tenant)),
                accounts[0],
            )
            try:
                result = app.acquire_token_silent([scope], account=account)
            except requests.RequestException as exc:
                raise AuthError(f"Entra ID could not be reached ({type(exc).__name__})") from exc
            store.save()
            if not result or "access_token" not in result:
                raise AuthError(
                    "the saved sign-in has expired or lacks this permission: run "
                    f"'python -m shared login --tenant {tenant}' again",
                    tenant=tenant,
                )
            return str(result["access_token"])

    return token


def _msal_error(what: str, result: Mapping[str, Any], tenant: str) -> AuthError:
    first = str(result.get("error_description") or result.get("error") or "no detail")
    return AuthError(
        f"{what}: {first.splitlines()[0][:300]}",
        error=_text(result.get("error")),
        error_codes=tuple(sorted(error_codes(result))),
        correlation_id=_text(result.get("correlation_id")),
        tenant=tenant,
    )
