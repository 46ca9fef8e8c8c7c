"""Application-context tokens: one MSAL ConfidentialClientApplication per tenant, per process.

MSAL keeps its token cache on the application object, so each app is built once (lazily, on
first use for its tenant) and kept: 100 API calls for one tenant cause one token request. The
partner context is the same code with the customer's tenant in the authority
(https://learn.microsoft.com/defender-xdr/api-partner-access).

Rotation without restart: the app is rebuilt (keeping its token cache) when the credential
source reports a new version, and when Entra refuses the credential the source is re-read once
and the call retried. Entra's answers are translated into our errors here, at the boundary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msal
import requests

from shared.core.errors import AuthError, ConsentError
from shared.core.settings import LOCAL_CONSENT_REDIRECT_URI
from shared.credentials.claims import ClaimsError, decode_claims
from shared.credentials.keyvault import KeyVaultSecret
from shared.credentials.sources import ClientCredentialSource, SecretSource
from shared.credentials.values import admin_consent_url

log = logging.getLogger(__name__)

#: AADSTS codes meaning "the client credential was refused": it may have been rotated, so it is
#: re-read once. 7000215 invalid secret, 7000222 expired secret, 700027 assertion signature not
#: valid (certificate not registered / replaced), 700024 assertion outside its valid time range.
#: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
ROTATION_CODES = frozenset({7000215, 7000222, 700027, 700024})
#: codes meaning the app is not consented in / not known to the tenant: an admin must act.
#: 65001 no consent, 7000229 no service principal, 700016 app not found in the directory,
#: 500011 the resource (Defender / Graph) is not in the tenant or not consented.
CONSENT_CODES = frozenset({65001, 7000229, 700016, 500011})
#: codes meaning no federated identity credential matches the managed identity's token: 70021
#: (and its newer per-claim forms 700211 issuer, 700212 audience, 700213 subject)
FEDERATION_CODES = frozenset({70021, 700211, 700212, 700213})
#: the rule a federated credential breaks most often, for the message
FEDERATED_RULE = (
    "only a user-assigned managed identity can be an app's federated credential "
    "(https://learn.microsoft.com/entra/workload-id/"
    "workload-identity-federation-config-app-trust-managed-identity): set AZURE_CLIENT_ID to its "
    "client id and give the app a federated credential with the tenant's issuer, the identity's "
    "principal id as subject and the cloud's token-exchange audience"
)

AppCall = Callable[[msal.ConfidentialClientApplication], Mapping[str, Any]]


@dataclass
class _TenantApp:
    app: msal.ConfidentialClientApplication
    credential_key: str
    cache: msal.TokenCache


class AppTokenProvider:
    """Gets app-only tokens for any tenant with the app's credential.

    Args:
        client_id: the app registration's client id.
        authority_url: the Entra host, e.g. ``https://login.microsoftonline.com``.
        credential: the client credential's source (secret, certificate or federated).
        secret: older spelling: a Key Vault client secret (wrapped in ``SecretSource``).
        http_client: the session MSAL uses (trusts the emulator CA in emulator mode).
        instance_discovery: False only for the emulator, whose host Microsoft cannot know.
        consent_redirect_uri: where admin-consent URLs send the admin back
            (``DEFENDER_CONSENT_REDIRECT_URI``).
    """

    def __init__(
        self,
        *,
        client_id: str,
        authority_url: str,
        http_client: requests.Session,
        credential: ClientCredentialSource | None = None,
        secret: KeyVaultSecret | None = None,
        instance_discovery: bool = True,
        app_factory: Callable[..., msal.ConfidentialClientApplication] | None = None,
        consent_redirect_uri: str = LOCAL_CONSENT_REDIRECT_URI,
    ) -> None:
        if credential is None:
            if secret is None:
                raise ValueError("give the credential source")
            credential = SecretSource(secret)
        self.client_id = client_id
        self.consent_redirect_uri = consent_redirect_uri
        self.authority_url = authority_url.rstrip("/")
        self.credential = credential
        self._http = http_client
        self._instance_discovery = instance_discovery
        self._factory = app_factory or msal.ConfidentialClientApplication
        self._apps: dict[str, _TenantApp] = {}
        self._lock = threading.Lock()
        self._tenant_locks: dict[str, threading.Lock] = {}
        self.apps_built = 0

    def token(self, tenant: str, scope: str) -> str:
        """An access token for ``scope`` in ``tenant`` (from MSAL's cache when still valid).

        Raises:
            ConsentError: the app is not consented in the tenant (the message says how to fix).
            AuthError: any other refusal; carries Entra's error and correlation id.
            SecretAccessError: the credential could not be read from Key Vault.
        """
        result = self.acquire(tenant, lambda app: app.acquire_token_for_client(scopes=[scope]))
        if "access_token" in result:
            return str(result["access_token"])
        raise self.error(tenant, scope, result)

    def for_tenant(self, tenant: str, scope: str) -> Callable[[], str]:
        """A zero-argument token source bound to one tenant and scope."""
        return lambda: self.token(tenant, scope)

    def consent_url(
        self, tenant: str, scope: str, redirect_uri: str | None = None, state: str | None = None
    ) -> str:
        """The admin-consent URL of this app for ``tenant`` (redirecting to the configured
        ``consent_redirect_uri`` unless told otherwise)."""
        return admin_consent_url(
            self.authority_url,
            tenant,
            self.client_id,
            scope,
            redirect_uri or self.consent_redirect_uri,
            state,
        )

    def acquire(self, tenant: str, call: AppCall) -> Mapping[str, Any]:
        """Run ``call`` with the tenant's app; re-read the credential once if Entra refuses it.

        Returns MSAL's result (a token or an error); use ``error`` to translate an error.

        Raises:
            AuthError: Entra ID could not be reached, or does not know the tenant.
            SecretAccessError: the credential could not be read from Key Vault.
        """
        with self._tenant_lock(tenant):
            used, result = self._call(tenant, call)
            if _credential_refused(result):
                # The credential may have been rotated: re-read it once (unless another tenant
                # already did) and use a fresh app: MSAL replays some error answers from memory.
                log.warning(
                    "Entra refused the app's %s for tenant %s; reading it again",
                    self.credential.kind,
                    tenant,
                )
                if self.credential.current()[0] == used:
                    self.credential.invalidate()
                self._drop(tenant)
                _, result = self._call(tenant, call)
            return result

    def error(self, tenant: str, scope: str, result: Mapping[str, Any]) -> AuthError:
        """Translate an MSAL error result into our error type (never carrying a secret)."""
        codes = error_codes(result)
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
            url = self.consent_url(tenant, scope)
            return ConsentError(
                f"tenant {tenant}: the app is not consented there ({reason})",
                action=f"an admin of tenant {tenant} must grant admin consent: {url}",
                **common,
            )
        if codes & FEDERATION_CODES:
            return AuthError(
                f"tenant {tenant}: Entra has no federated credential matching the managed "
                f"identity's token ({reason}); {FEDERATED_RULE}",
                **common,
            )
        if codes & ROTATION_CODES or error == "invalid_client":
            return AuthError(
                f"tenant {tenant}: Entra refused the app's {self.credential.kind} even after "
                f"reading it again: {reason}",
                **common,
            )
        return AuthError(f"tenant {tenant}: token request refused: {reason}", **common)

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._tenant_locks.setdefault(tenant, threading.Lock())

    def _drop(self, tenant: str) -> None:
        with self._lock:
            state = self._apps.get(tenant)
            if state is not None:
                state.credential_key = ""  # forces a rebuild, keeping the token cache

    def _call(self, tenant: str, call: AppCall) -> tuple[str, Mapping[str, Any]]:
        state = self._app(tenant)
        try:
            result = call(state.app)
        except requests.RequestException as exc:
            raise AuthError(
                f"Entra ID could not be reached for tenant {tenant} ({type(exc).__name__})",
                tenant=tenant,
            ) from exc
        return state.credential_key, result

    def _app(self, tenant: str) -> _TenantApp:
        key, client_credential = self.credential.current()
        with self._lock:
            state = self._apps.get(tenant)
        if state is not None and state.credential_key == key:
            return state
        # A new credential version (or a refusal): a new app, but the same token cache, so
        # tokens already issued stay in use until they expire.
        cache = state.cache if state is not None else msal.TokenCache()
        app = self._build(tenant, client_credential, cache)
        if state is not None:
            log.info(
                "tenant %s: the app's %s changed; MSAL app rebuilt", tenant, self.credential.kind
            )
        state = _TenantApp(app, key, cache)
        with self._lock:
            self._apps[tenant] = state
            self.apps_built += 1
        return state

    def _build(
        self, tenant: str, client_credential: Any, cache: msal.TokenCache
    ) -> msal.ConfidentialClientApplication:
        kwargs: dict[str, Any] = {
            "client_credential": client_credential,
            "authority": f"{self.authority_url}/{tenant}",
            "http_client": self._http,
            "token_cache": cache,
        }
        if not self._instance_discovery:
            kwargs["instance_discovery"] = False
        try:
            return self._factory(self.client_id, **kwargs)
        except ValueError as exc:
            # MSAL raises ValueError when tenant discovery answers 4xx (AADSTS90002)
            raise AuthError(
                f"Entra ID does not know tenant {tenant}: check the tenant id",
                tenant=tenant,
                error="invalid_tenant",
            ) from exc
        except requests.RequestException as exc:
            raise AuthError(
                f"Entra ID could not be reached for tenant {tenant} ({type(exc).__name__})",
                tenant=tenant,
            ) from exc

    def fresh_token(self, tenant: str, scope: str) -> str:
        """A token for ``scope`` in ``tenant`` asked of Entra now, never taken from a cache:
        proof that the app holds a service principal (an admin consented) in that tenant
        today. The token is not kept. A refused credential is re-read once, as in ``acquire``.

        Raises:
            ConsentError: the app is not consented in the tenant.
            AuthError: any other refusal, or Entra ID could not be reached (no ``error``).
        """
        for attempt in (1, 2):
            key, client_credential = self.credential.current()
            app = self._build(tenant, client_credential, msal.TokenCache())
            try:
                result = app.acquire_token_for_client(scopes=[scope])
            except requests.RequestException as exc:
                raise AuthError(
                    f"Entra ID could not be reached for tenant {tenant} ({type(exc).__name__})",
                    tenant=tenant,
                ) from exc
            if "access_token" in result:
                return str(result["access_token"])
            if attempt == 1 and _credential_refused(result):
                if self.credential.current()[0] == key:
                    self.credential.invalidate()
                continue
            raise self.error(tenant, scope, result)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def prove_consent(self, tenant: str, scope: str) -> tuple[str, ...]:
        """Prove the app is consented in ``tenant``: a token asked of Entra now with the app's
        credential against that tenant's authority, issued by that tenant. Returns the
        token's application roles (the token itself is dropped).

        Raises:
            ConsentError: the app is not consented there.
            AuthError: another refusal, or Entra ID could not be reached.
        """
        token = self.fresh_token(tenant, scope)
        try:
            claims = decode_claims(token)
        except ClaimsError as exc:
            raise AuthError(f"tenant {tenant}: the token is not readable ({exc})") from None
        if claims.tenant != tenant:
            raise AuthError(
                f"tenant {tenant}: Entra issued the token in another tenant", error="wrong_tenant"
            )
        return claims.roles


def _credential_refused(result: Mapping[str, Any]) -> bool:
    return "access_token" not in result and (
        bool(error_codes(result) & ROTATION_CODES) or result.get("error") == "invalid_client"
    )


def error_codes(result: Mapping[str, Any]) -> set[int]:
    codes = result.get("error_codes")
    if not isinstance(codes, list):
        return set()
    return {c for c in codes if isinstance(c, int)}
