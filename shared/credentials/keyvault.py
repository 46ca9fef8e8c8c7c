"""Reads the app's credential (a secret, or a certificate's secret) from Key Vault.

Key Vault is reached through the Function's managed identity. The item is cached for a bounded
time (``CREDENTIAL_CACHE_MINUTES``) and can be dropped on demand (``invalidate``), so a rotated
secret or certificate takes effect without a restart: App Service Key Vault references only
refresh "within 24 hours"
(https://learn.microsoft.com/azure/app-service/app-service-key-vault-references#rotation).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.core.clock import Clock
from shared.core.errors import AuthError, SecretAccessError


class _SecretProperties(Protocol):
    @property
    def version(self) -> str | None: ...
    @property
    def expires_on(self) -> datetime | None: ...
    @property
    def content_type(self) -> str | None: ...


class _SecretBundle(Protocol):
    @property
    def value(self) -> str | None: ...
    @property
    def properties(self) -> _SecretProperties: ...


class SecretGetter(Protocol):
    """The one method of ``azure.keyvault.secrets.SecretClient`` we use."""

    def get_secret(self, name: str) -> _SecretBundle: ...


@dataclass(frozen=True, slots=True)
class VaultItem:
    """One version of a Key Vault secret. ``repr`` never shows the value."""

    value: str = field(repr=False)
    version: str | None
    expires_on: datetime | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class _Cached:
    item: VaultItem
    read_at: datetime


class KeyVaultSecret:
    """One named secret, read lazily and cached for at most ``max_age``."""

    def __init__(
        self,
        client: SecretGetter,
        name: str,
        *,
        clock: Clock,
        max_age: timedelta,
        setting: str = "DEFENDER_CLIENT_SECRET_NAME",
    ) -> None:
        self._client = client
        self.name = name
        self.setting = setting
        self._clock = clock
        self._max_age = max_age
        self._cached: _Cached | None = None
        self._lock = threading.Lock()
        self.reads = 0

    def get(self) -> str:
        """The secret's current value (from cache while fresh).

        Raises:
            SecretAccessError: the vault refused, lacks the secret, or could not be reached.
            AuthError: the managed identity could not get a token for Key Vault.
        """
        return self.get_item().value

    def get_item(self) -> VaultItem:
        """The secret's current version with its attributes (from cache while fresh).

        Raises:
            SecretAccessError: the vault refused, lacks the secret, or could not be reached.
            AuthError: the managed identity could not get a token for Key Vault.
        """
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() - cached.read_at < self._max_age:
                return cached.item
            item = self._read()
            self._cached = _Cached(item, self._clock())
            return item

    def invalidate(self) -> None:
        """Forget the cached value: the next ``get`` reads the vault again."""
        with self._lock:
            self._cached = None

    def _read(self) -> VaultItem:
        self.reads += 1
        try:
            bundle = self._client.get_secret(self.name)
        except ResourceNotFoundError as exc:
            raise SecretAccessError(
                f"Key Vault has no secret named '{self.name}'; store the app's credential "
                f"under that name or fix {self.setting}"
            ) from exc
        except ClientAuthenticationError as exc:
            raise AuthError(
                "the managed identity could not get a token for Key Vault "
                f"({_first_line(exc.message)}); check IDENTITY_ENDPOINT/IDENTITY_HEADER and "
                "AZURE_CLIENT_ID"
            ) from exc
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise SecretAccessError(
                    f"Key Vault refused to read secret '{self.name}' (403): grant the Function's "
                    "identity the 'Key Vault Secrets User' role (or a get-secret access policy)"
                ) from exc
            raise SecretAccessError(
                f"Key Vault answered HTTP {exc.status_code} reading secret '{self.name}'"
            ) from exc
        except ServiceRequestError as exc:
            raise SecretAccessError(
                f"Key Vault could not be reached ({type(exc).__name__}); check KEY_VAULT_URL"
            ) from exc
        if not bundle.value:
            raise SecretAccessError(f"Key Vault secret '{self.name}' is empty")
        props = bundle.properties
        return VaultItem(bundle.value, props.version, props.expires_on, props.content_type)


def _first_line(text: str | None) -> str:
    # azure-identity messages can be long and multi-line; the first line carries the reason.
    # They never contain the token itself.
    return (text or "no detail").strip().splitlines()[0][:200]
