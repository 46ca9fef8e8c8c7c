"""Application-context tokens: one MSAL ConfidentialClientApplication per tenant, per process.

MSAL keeps its token cache on the application object, so each app is built once (lazily, on
first use for its tenant) and kept: 100 API calls for one tenant cause one token request.
Entra's answers are translated into our errors here, at the boundary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import msal
import requests

from shared.credentials.keyvault import KeyVaultSecret
from shared.errors import AuthError, ConsentError

log = logging.getLogger(__name__)

#: AADSTS codes meaning "the client credential was refused": the secret may have been rotated,
#: so it is re-read from Key Vault once. 7000215 invalid secret, 7000222 expired secret.
#: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
ROTATION_CODES = frozenset({7000215, 7000222})
#: codes meaning the app is not consented in / not known to the tenant: an admin must act.
CONSENT_CODES = frozenset({65001, 7000229, 700016, 500011})


def admin_consent_url(
    authority_url: str, tenant: str, client_id: str, scope: str, redirect_uri: str | None = None
) -> str:
    """The v2 admin-consent URL an admin of ``tenant`` opens to consent the app.

    https://learn.microsoft.com/entra/identity-platform/v2-admin-consent
    """
    params = {"client_id": client_id, "scope": scope}
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    return f"{authority_url.rstrip('/')}/{tenant}/v2.0/adminconsent?{urlencode(params)}"


class AppTokenProvider:
    """Gets app-only tokens for any tenant with the app's client secret from Key Vault.

    Args:
        client_id: the app registration's client id.
        authority_url: the Entra host, e.g. ``https://login.microsoftonline.com``.
        secret: the client secret's source (cached, invalidated on rotation).
        http_client: the session MSAL uses (trusts the emulator CA in emulator mode).
        instance_discovery: False only for the emulator, whose host Microsoft cannot know.
    """

    def __init__(
        self,
        *,
        client_id: str,
        authority_url: str,
        secret: KeyVaultSecret,
        http_client: requests.Session,
        instance_discovery: bool = True,
        app_factory: Callable[..., msal.ConfidentialClientApplication] | None = None,
    ) -> None:
        self.client_id = client_id
        self.authority_url = authority_url.rstrip("/")
        self._secret = secret
        self._http = http_client
        self._instance_discovery = instance_discovery
        self._factory = app_factory or msal.ConfidentialClientApplication
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()
        self._tenant_locks: dict[str, threading.Lock] = {}
        self.apps_built = 0

    def token(self, tenant: str, scope: str) -> str:
        """An access token for ``scope`` in ``tenant`` (from MSAL's cache when still valid).

        Raises:
            ConsentError: the app is not consented in the tenant (the message says how to fix).
            AuthError: any other refusal; carries Entra's error and correlation id.
            SecretAccessError: the secret could not be read from Key Vault.
        """
        with self._tenant_lock(tenant):
            result = self._acquire(tenant, scope)
            if _codes(result) & ROTATION_CODES:
                # The secret may have been rotated in Key Vault: re-read it once and rebuild the
                # app (MSAL replays some error answers from memory, so a fresh app is needed).
                log.warning("Entra refused the client secret for tenant %s; re-reading it", tenant)
                self._secret.invalidate()
                with self._lock:
                    self._apps.pop(tenant, None)
                result = self._acquire(tenant, scope)
            if "access_token" in result:
                return str(result["access_token"])
            raise self._error(tenant, scope, result)

    def for_tenant(self, tenant: str, scope: str) -> Callable[[], str]:
        """A zero-argument token source bound to one tenant and scope."""
        return lambda: self.token(tenant, scope)

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._tenant_locks.setdefault(tenant, threading.Lock())

    def _app(self, tenant: str) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._apps.get(tenant)
        if app is not None:
            return app
        secret = self._secret.get()
        kwargs: dict[str, Any] = {
            "client_credential": secret,
            "authority": f"{self.authority_url}/{tenant}",
            "http_client": self._http,
        }
        if not self._instance_discovery:
            kwargs["instance_discovery"] = False
        try:
            app = self._factory(self.client_id, **kwargs)
        except ValueError as exc:
            # MSAL raises ValueError when tenant discovery answers 4xx (AADSTS90002)
            raise AuthError(
                f"Entra ID does not know tenant {tenant}: check the tenant id", tenant=tenant
            ) from exc
        except requests.RequestException as exc:
            raise AuthError(
                f"Entra ID could not be reached for tenant {tenant} ({type(exc).__name__})",
                tenant=tenant,
            ) from exc
        with self._lock:
            self._apps[tenant] = app
            self.apps_built += 1
        return app

    def _acquire(self, tenant: str, scope: str) -> Mapping[str, Any]:
        app = self._app(tenant)
        try:
            result: Mapping[str, Any] = app.acquire_token_for_client(scopes=[scope])
        except requests.RequestException as exc:
            raise AuthError(
                f"Entra ID could not be reached for tenant {tenant} ({type(exc).__name__})",
                tenant=tenant,
            ) from exc
        return result

    def _error(self, tenant: str, scope: str, result: Mapping[str, Any]) -> AuthError:
        codes = _codes(result)
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "").splitlines()
        reason = description[0][:300] if description else error
        correlation = result.get("correlation_id")
        common: dict[str, Any] = {
            "error": error,
            "error_codes": tuple(sorted(codes)),
            "correlation_id": str(correlation) if correlation else None,
            "tenant": tenant,
        }
        if codes & CONSENT_CODES:
            url = admin_consent_url(self.authority_url, tenant, self.client_id, scope)
            return ConsentError(
                f"tenant {tenant}: the app is not consented there ({reason})",
                action=f"an admin of tenant {tenant} must grant admin consent: {url}",
                **common,
            )
        return AuthError(f"tenant {tenant}: token request refused: {reason}", **common)


def _codes(result: Mapping[str, Any]) -> set[int]:
    codes = result.get("error_codes")
    if not isinstance(codes, list):
        return set()
    return {c for c in codes if isinstance(c, int)}
