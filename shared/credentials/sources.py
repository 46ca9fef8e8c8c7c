"""The app's client credential, in the three kinds ``DEFENDER_CREDENTIAL_KIND`` chooses from.

- ``secret``: a client secret kept in Key Vault;
- ``certificate``: a certificate kept in Key Vault (its secret holds the PFX or PEM), which MSAL
  uses to sign a client assertion;
- ``federated``: no secret at all; the managed identity's token for ``api://AzureADTokenExchange``
  is the app's client assertion (a managed identity as a federated identity credential):
  https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity

Each source tells which *version* of the credential it returns, so the token provider rebuilds
its MSAL app when Key Vault holds a new version (rotation without restart), and can be told
to re-read (``invalidate``) when Entra refuses the credential.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Protocol

from shared.core.errors import AuthError
from shared.credentials.certificate import CertificateCredential, load_certificate
from shared.credentials.keyvault import KeyVaultSecret, VaultItem
from shared.credentials.values import CredentialInfo, CredentialKind


class ClientCredentialSource(Protocol):
    """Where the token provider gets the app's credential."""

    @property
    def kind(self) -> CredentialKind: ...

    def current(self) -> tuple[str, Any]:
        """The credential's version key and MSAL's ``client_credential`` for it."""
        ...

    def invalidate(self) -> None:
        """Forget any cached value: the next ``current`` reads it again."""
        ...

    def describe(self) -> CredentialInfo:
        """Name, version and expiry, for ``check`` (reads the source if needed)."""
        ...


def _version_key(item: VaultItem) -> str:
    if item.version:
        return item.version
    # A vault that reports no version: a digest stands in (never the value itself).
    return "sha256:" + hashlib.sha256(item.value.encode()).hexdigest()[:16]


class SecretSource:
    """A client secret read from Key Vault (cached by ``KeyVaultSecret``)."""

    kind: CredentialKind = "secret"

    def __init__(self, secret: KeyVaultSecret) -> None:
        self._secret = secret

    def current(self) -> tuple[str, Any]:
        """The secret's version and value.

        Raises:
            SecretAccessError, AuthError: see ``KeyVaultSecret.get_item``.
        """
        item = self._secret.get_item()
        return _version_key(item), item.value

    def invalidate(self) -> None:
        """Read Key Vault again on next use."""
        self._secret.invalidate()

    def describe(self) -> CredentialInfo:
        """The Key Vault secret's name, version and expiry."""
        item = self._secret.get_item()
        return CredentialInfo("secret", self._secret.name, item.version, item.expires_on)


class CertificateSource:
    """A certificate read from Key Vault (the secret holding its key), parsed once per version."""

    kind: CredentialKind = "certificate"

    def __init__(self, secret: KeyVaultSecret) -> None:
        self._secret = secret
        self._lock = threading.Lock()
        self._parsed: tuple[str, CertificateCredential] | None = None

    def _certificate(self) -> tuple[str, CertificateCredential]:
        item = self._secret.get_item()
        key = _version_key(item)
        with self._lock:
            if self._parsed is None or self._parsed[0] != key:
                cert = load_certificate(item.value, item.content_type, name=self._secret.name)
                self._parsed = (key, cert)
            return self._parsed

    def current(self) -> tuple[str, Any]:
        """The certificate's version and MSAL's certificate credential.

        Raises:
            SecretAccessError: Key Vault refused, or the item is not a usable certificate.
            AuthError: the managed identity could not get a token for Key Vault.
        """
        key, cert = self._certificate()
        return key, cert.msal_credential()

    def invalidate(self) -> None:
        """Read Key Vault again on next use."""
        self._secret.invalidate()

    def describe(self) -> CredentialInfo:
        """The certificate's name, version, thumbprint and the earlier of its two expiries."""
        item = self._secret.get_item()
        _, cert = self._certificate()
        ends = [d for d in (item.expires_on, cert.not_after) if d is not None]
        return CredentialInfo(
            "certificate",
            self._secret.name,
            item.version,
            min(ends) if ends else None,
            thumbprint=cert.thumbprint_sha256,
        )


class _TokenGetter(Protocol):
    """The one method of an azure-identity credential used here."""

    def get_token(self, *scopes: str) -> Any: ...


class FederatedSource:
    """The managed identity's token for the token-exchange audience, as the client assertion.

    azure-identity caches managed-identity tokens, so asking for it on every Entra token request
    (MSAL calls the assertion callable each time it needs one) costs no extra round trip.

    Args:
        credential: the managed identity (``ManagedIdentityCredential``).
        audience: ``api://AzureADTokenExchange`` in the public cloud; national clouds have
            their own (``shared.core.clouds``).
    """

    kind: CredentialKind = "federated"

    def __init__(self, credential: _TokenGetter, audience: str) -> None:
        self._credential = credential
        self.audience = audience

    def _assertion(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self._credential.get_token(f"{self.audience}/.default").token)
        except ClientAuthenticationError as exc:
            first = (exc.message or "no detail").strip().splitlines()[0][:200]
            raise AuthError(
                f"the managed identity could not get a token for {self.audience} ({first}); "
                "check IDENTITY_ENDPOINT/IDENTITY_HEADER and AZURE_CLIENT_ID"
            ) from exc

    def current(self) -> tuple[str, Any]:
        """A constant version (nothing to rotate) and the callable-assertion credential."""
        # A callable, not a string: MSAL asks for a fresh assertion per request, and a static
        # string assertion is deprecated in MSAL >= 1.39.
        return "federated", {"client_assertion": self._assertion}

    def invalidate(self) -> None:
        """Nothing is cached here (azure-identity refreshes the identity's token itself)."""

    def describe(self) -> CredentialInfo:
        """Proves the managed identity can get the exchange token (nothing to expire)."""
        self._assertion()
        return CredentialInfo("federated", self.audience, None, None)
