"""Reads the app's client secret from Key Vault through the Function's managed identity.

The value is cached for a bounded time and can be dropped on demand (``invalidate``) so a
rotated secret takes effect without a restart (App Service Key Vault references only refresh
"within 24 hours": user-pains.md §8.10).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.clock import Clock
from shared.errors import AuthError, SecretAccessError


class _SecretBundle(Protocol):
    @property
    def value(self) -> str | None: ...


class SecretGetter(Protocol):
    """The one method of ``azure.keyvault.secrets.SecretClient`` we use."""

    def get_secret(self, name: str) -> _SecretBundle: ...


@dataclass(frozen=True, slots=True)
class _Cached:
    value: str
    read_at: datetime


class KeyVaultSecret:
    """One named secret, read lazily and cached for at most ``max_age``."""

    def __init__(
        self, client: SecretGetter, name: str, *, clock: Clock, max_age: timedelta
    ) -> None:
        self._client = client
        self.name = name
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
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() - cached.read_at < self._max_age:
                return cached.value
            value = self._read()
            self._cached = _Cached(value, self._clock())
            return value

    def invalidate(self) -> None:
        """Forget the cached value: the next ``get`` reads the vault again."""
        with self._lock:
            self._cached = None

    def _read(self) -> str:
        self.reads += 1
        try:
            bundle = self._client.get_secret(self.name)
        except ResourceNotFoundError as exc:
            raise SecretAccessError(
                f"Key Vault has no secret named '{self.name}'; store the app's client secret "
                "under that name or fix DEFENDER_CLIENT_SECRET_NAME"
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
        return bundle.value


def _first_line(text: str | None) -> str:
    # azure-identity messages can be long and multi-line; the first line carries the reason.
    # They never contain the token itself.
    return (text or "no detail").strip().splitlines()[0][:200]
