"""Composition root: the one place that builds real clients, once per process, on first use.

Nothing here runs at import time. ``services()`` parses the settings and wires the object graph;
it is cached, so the Functions worker and the CLI reuse one HTTP pool, one Key Vault client, one
MSAL app per tenant (with its token cache) and one API client per tenant.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.clock import Clock, utc_now
from shared.settings import Settings, load

if TYPE_CHECKING:  # real types for readers and mypy; imported lazily at run time
    import requests
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    from shared.credentials.sources import ClientCredentialSource
    from shared.credentials.tokens import AppTokenProvider
    from shared.credentials.user import OnBehalfOfProvider
    from shared.defender.client import DefenderClient
    from shared.defender.limiter import RateLimiterRegistry
    from shared.ingest import Ingestor, Notify
    from shared.storage.state import WatermarkStore
    from shared.tenants import TenantRegistry

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The wired application. Build with ``build(settings)``; use through ``services()``."""

    settings: Settings
    clock: Clock
    session: requests.Session
    tokens: AppTokenProvider
    blob_service: BlobServiceClient
    table_service: TableServiceClient
    _clients: dict[str, DefenderClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _storage_ready: bool = False
    _obo: OnBehalfOfProvider | None = None
    _limiter: RateLimiterRegistry | None = None
    _limiter_lock: threading.Lock = field(default_factory=threading.Lock)
    #: the Function's identity (Application Insights with local auth off needs it)
    credential: TokenCredential | None = None

    def rate_limiter(self) -> RateLimiterRegistry:
        """The process's client-side rate limiter (one bucket per tenant and API family),
        shared by every client and thread so together they keep under the quotas."""
        from shared.defender.limiter import RateLimiterRegistry

        with self._limiter_lock:
            if self._limiter is None:
                self._limiter = RateLimiterRegistry(self.settings.rate_limits)
            return self._limiter

    def client_for(self, tenant: str) -> DefenderClient:
        """The API client of one tenant (built once)."""
        from shared.defender.client import DefenderClient, RetryPolicy

        limiter = self.rate_limiter()
        with self._lock:
            client = self._clients.get(tenant)
            if client is None:
                s = self.settings
                client = DefenderClient(
                    session=self.session,
                    token=self.tokens.for_tenant(tenant, s.api_scope),
                    api=s.api,
                    base_url=s.api_url,
                    timeout=s.http_timeout,
                    retry=RetryPolicy(max_attempts=s.api_max_attempts, budget=s.api_time_budget),
                    limiter=limiter,
                    tenant=tenant,
                    page_size=s.page_size,
                )
                self._clients[tenant] = client
            return client

    def user_client_for(self, tenant: str) -> DefenderClient:
        """An API client acting as the user signed in with ``python -m shared login``."""
        from shared.credentials.user import cli_token_source
        from shared.defender.client import DefenderClient, RetryPolicy

        s = self.settings
        return DefenderClient(
            session=self.session,
            token=cli_token_source(s, tenant, s.api_scope, http_client=self.session),
            api=s.api,
            base_url=s.api_url,
            timeout=s.http_timeout,
            retry=RetryPolicy(max_attempts=s.api_max_attempts, budget=s.api_time_budget),
            limiter=self.rate_limiter(),
            tenant=tenant,
            page_size=s.page_size,
        )

    def tenant_registry(self) -> TenantRegistry:
        """The tenants to serve: ``INGEST_TENANTS`` merged with the registry table."""
        from shared.tenants import TenantRegistry

        table = self.table_service.get_table_client(self.settings.tenant_table)
        return TenantRegistry(self.settings.tenants, table)

    def enabled_tenants(self) -> tuple[str, ...]:
        """Ids of the enabled tenants of the registry."""
        return tuple(e.tenant_id for e in self.tenant_registry().enabled())

    def on_behalf_of(self) -> OnBehalfOfProvider:
        """The user-context provider for HTTP callers (one per process, built on first use)."""
        from shared.credentials.caller import CallerTokenValidator
        from shared.credentials.user import OnBehalfOfProvider

        with self._lock:
            if self._obo is None:
                s = self.settings
                validator = CallerTokenValidator(
                    authority_url=s.authority_url,
                    issuer_hosts=(s.cloud.authority_url, s.authority_url),
                    audiences=(s.client_id, f"api://{s.client_id}"),
                    session=self.session,
                    clock=self.clock,
                )
                self._obo = OnBehalfOfProvider(self.tokens, validator=validator)
            return self._obo

    def ingestor(self, *, notify: Notify | None = None) -> Ingestor:
        """The ingestion use case wired to real storage, as the app (never as a user: see
        ``shared.ingest``). ``notify`` hears of the versions stored after each slice."""
        from shared.ingest import Ingestor
        from shared.storage import INCIDENT_CONTAINER, INCIDENT_TABLE, STATE_CONTAINER
        from shared.storage.archive import IncidentArchive, Quarantine
        from shared.storage.state import PageJournal, TenantLock, WatermarkStore
        from shared.storage.table import IncidentTable
        from shared.telemetry import recorder

        self._ensure_storage()
        # None unless APPLICATIONINSIGHTS_CONNECTION_STRING is set
        health = recorder(credential=None if self.settings.emulator else self.credential)
        data = self.blob_service.get_container_client(INCIDENT_CONTAINER)
        state = self.blob_service.get_container_client(STATE_CONTAINER)
        table = self.table_service.get_table_client(INCIDENT_TABLE)
        s = self.settings
        return Ingestor(
            client_for=self.client_for,
            archive=IncidentArchive(data),
            table=IncidentTable(table),
            watermarks=WatermarkStore(state),
            journal=PageJournal(state),
            quarantine=Quarantine(data),
            lock_for=lambda tenant: TenantLock(state, tenant, lease_seconds=s.lease_seconds),
            clock=self.clock,
            lookback=s.lookback,
            overlap=s.overlap,
            page_size=s.page_size,
            safety_lag=s.safety_lag,
            time_budget=s.time_budget,
            lag_warning=s.lag_warning,
            notify=notify,
            observe=None if health is None else health.record,
        )

    def checkpoints(self) -> WatermarkStore:
        """The checkpoint store (for ``check``)."""
        from shared.storage import STATE_CONTAINER
        from shared.storage.state import WatermarkStore

        return WatermarkStore(self.blob_service.get_container_client(STATE_CONTAINER))

    def _ensure_storage(self) -> None:
        """Create the containers and table on first use (idempotent)."""
        from azure.core.exceptions import AzureError, ResourceExistsError

        from shared.errors import StorageError
        from shared.storage import INCIDENT_CONTAINER, INCIDENT_TABLE, STATE_CONTAINER

        with self._lock:
            if self._storage_ready:
                return
            try:
                for name in (INCIDENT_CONTAINER, STATE_CONTAINER):
                    with contextlib.suppress(ResourceExistsError):
                        self.blob_service.create_container(name)
                self.table_service.create_table_if_not_exists(INCIDENT_TABLE)
            except AzureError as exc:
                raise StorageError(
                    f"could not prepare the data storage account ({type(exc).__name__}); check "
                    "DATA_STORAGE_ACCOUNT_NAME / DATA_STORAGE_CONNECTION_STRING and the identity's "
                    "Storage Blob/Table Data Contributor roles"
                ) from exc
            self._storage_ready = True


def build(settings: Settings, *, clock: Clock = utc_now) -> Services:
    """Wire real clients from settings (network I/O happens later, on first use)."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    from shared.credentials.tokens import AppTokenProvider
    from shared.http import build_session

    if settings.emulator:
        log.warning(
            "EMULATOR_CA_CERT is set: trusting a local test CA, with Entra instance discovery "
            "and Key Vault challenge-resource verification off. Never set it in Azure."
        )
    credential = azure_credential(settings)
    session = build_session(ca_cert=settings.emulator_ca_cert)
    tokens = AppTokenProvider(
        client_id=settings.client_id,
        authority_url=settings.authority_url,
        credential=client_credential(settings, credential, clock),
        http_client=session,
        instance_discovery=not settings.emulator,
    )
    if settings.storage_connection_string:
        blob_service = BlobServiceClient.from_connection_string(settings.storage_connection_string)
        table_service = TableServiceClient.from_connection_string(
            settings.storage_connection_string
        )
    else:
        account, suffix = settings.storage_account_name, settings.cloud.storage_suffix
        blob_service = BlobServiceClient(f"https://{account}.blob.{suffix}", credential)
        table_service = TableServiceClient(
            f"https://{account}.table.{suffix}", credential=credential
        )
    return Services(
        settings=settings,
        clock=clock,
        session=session,
        tokens=tokens,
        blob_service=blob_service,
        table_service=table_service,
        credential=credential,
    )


def client_credential(
    settings: Settings, credential: TokenCredential, clock: Clock
) -> ClientCredentialSource:
    """The app's client credential source for ``DEFENDER_CREDENTIAL_KIND``."""
    from shared.credentials.sources import CertificateSource, FederatedSource, SecretSource

    if settings.credential_kind == "federated":
        return FederatedSource(credential, settings.cloud.token_exchange_audience)
    from azure.keyvault.secrets import SecretClient

    from shared.credentials.keyvault import KeyVaultSecret

    vault_kwargs: dict[str, Any] = {}
    if settings.emulator:
        vault_kwargs = {
            "verify_challenge_resource": False,
            "connection_verify": str(settings.emulator_ca_cert),
        }
    vault = SecretClient(settings.key_vault_url, credential, **vault_kwargs)
    if settings.credential_kind == "certificate":
        # Key Vault serves a certificate's private key as the secret of the same name.
        name = settings.certificate_name or ""
        item = KeyVaultSecret(
            vault,
            name,
            clock=clock,
            max_age=settings.credential_cache,
            setting="DEFENDER_CERTIFICATE_NAME",
        )
        return CertificateSource(item)
    secret = KeyVaultSecret(
        vault, settings.client_secret_name, clock=clock, max_age=settings.credential_cache
    )
    return SecretSource(secret)


def azure_credential(settings: Settings) -> TokenCredential:
    """The Function's identity: managed identity, or developer sign-in when asked for."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.azure_credential == "developer":
        return DefaultAzureCredential()
    return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)


@functools.cache
def services() -> Services:
    """The process-wide services, built from the environment on first call."""
    return build(load())
