"""Composition root: the one place that builds real clients, once per process, on first use.

Nothing here runs at import time. ``services()`` parses the settings and wires the object graph
once per process, however many threads call it first at the same time (single-flight), so the
Functions worker and the CLI reuse one HTTP pool, one Key Vault client, one MSAL app per tenant
(with its token cache), one API client per tenant and one set of rate limiters.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO, TypeVar

# The composition root imports every wing, and so every SDK. ``function_app.py`` (indexed by
# the Functions host, where import time counts), ``shared.worker`` and the CLI
# (``shared.cli.common``: ``--help`` must not pay for it) therefore import this module only on
# first use; the HTTP face's wiring (``shared.api.app``) imports it at the top.
import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from requests.adapters import HTTPAdapter

from shared.core.clock import Clock, utc_now
from shared.core.errors import BridgeError, ConfigError, StorageError
from shared.core.retirement import api_notice
from shared.core.settings import Settings, load
from shared.core.surfaces import ApiKind
from shared.credentials.caller import CallerTokenValidator
from shared.credentials.keyvault import KeyVaultSecret
from shared.credentials.sources import (
    CertificateSource,
    ClientCredentialSource,
    FederatedSource,
    SecretSource,
)
from shared.credentials.tokens import AppTokenProvider
from shared.credentials.user import OnBehalfOfProvider, cli_token_source, device_code_login
from shared.credentials.values import CallerClaims, SignedIn
from shared.defender.client import DefenderClient, RetryPolicy
from shared.defender.limiter import RateLimiterRegistry
from shared.defender.session import SteadyEnvironmentSession, build_session
from shared.push.keys import PushKeys
from shared.push.target import Resolver, system_resolver
from shared.push.transport import Connect, Sender, tls_context
from shared.storage import INCIDENT_CONTAINER, INCIDENT_TABLE, STATE_CONTAINER
from shared.storage.archive import IncidentArchive, Quarantine
from shared.storage.containers import create_container_if_not_exists
from shared.storage.jobs import JobStore
from shared.storage.push import DeadLetter, PushBacklog, table_rows
from shared.storage.queue import IngestQueue, QueueSender
from shared.storage.state import PageJournal, TenantLock, WatermarkStore, leased_tenants
from shared.storage.subscriptions import SUBSCRIPTION_TABLE, EchoMarks, SubscriptionStore
from shared.storage.table import IncidentTable
from shared.storage.tenants import ConsentStateStore, RunStateStore, TenantRegistry
from shared.storage.values import DEADLETTER_CONTAINER, JOB_CONTAINER, TenantEntry
from shared.telemetry import recorder
from shared.usecases.doctor import http_auth_notes
from shared.usecases.fanout import Fanout
from shared.usecases.ingest import Ingestor, IngestStores, Notify, RunOptions
from shared.usecases.push.delivery import Callbacks, PushOptions, PushWorker
from shared.usecases.push.outbox import POISON_QUEUE as PUSH_POISON_QUEUE
from shared.usecases.push.outbox import PUSH_QUEUE, Outbox

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: connections kept per storage host: more than the tenants a worker runs at once
#: (host.json batchSize + newBatchThreshold, or INGEST_CONCURRENCY)
STORAGE_POOL_SIZE = 32

#: how long the HTTP API trusts its copy of the tenant registry
REGISTRY_TTL_SECONDS = 60.0


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
    # HTTP API
    queue_service: QueueServiceClient | None = None
    _validator: CallerTokenValidator | None = None
    #: what faces wired from these services (``once``)
    _faces: dict[str, Any] = field(default_factory=dict)
    _registered: tuple[float, tuple[str, ...]] | None = None
    _api_notice_pending: bool = True  # build() logged it; the first run need not repeat it

    def log_api_notice(self, *, run: bool = True) -> None:
        """Warn (error after the date) when the configured API is retiring: the legacy API
        stops working on 2027-02-01 (``shared.core.retirement``). Called by ``build`` and at the
        start of every ingestion run; ``run=False`` is build's call."""
        if run and self._api_notice_pending:
            self._api_notice_pending = False
            return
        notice = api_notice(self.settings.defender.api, self.clock())
        if notice.status != "ok":
            level = logging.ERROR if notice.status == "fail" else logging.WARNING
            log.log(level, "%s; %s", notice.detail, notice.fix)

    _ingest_queue: IngestQueue | None = None
    _registry_ready: bool = False

    #: the Function's identity (Application Insights with local auth off needs it)
    credential: TokenCredential | None = None

    # push: test seams for the resolver and the TCP connect of deliveries (None: the system's)
    push_resolver: Resolver | None = None
    push_connect: Connect | None = None

    def rate_limiter(self) -> RateLimiterRegistry:
        """The process's client-side rate limiter (one bucket per tenant and API family),
        shared by every client and thread so together they keep under the quotas."""
        with self._limiter_lock:
            if self._limiter is None:
                self._limiter = RateLimiterRegistry(self.settings.defender.rate_limits)
            return self._limiter

    def defender_client(
        self, tenant: str, token: Callable[[], str], *, api: ApiKind | None = None
    ) -> DefenderClient:
        """The one factory of Defender API clients: the app's, the signed-in user's
        (``--as-user``) and an HTTP caller's (``context=user``) differ only in ``token``, so
        retry rules, timeouts, page size and the shared rate limiter cannot drift apart."""
        s = _with_api(self.settings, api)
        return DefenderClient(
            session=self.session,
            token=token,
            api=s.defender.api,
            base_url=s.defender.api_url,
            timeout=s.defender.http_timeout,
            retry=RetryPolicy(
                max_attempts=s.defender.max_attempts,
                budget=s.defender.time_budget,
                max_wait=s.defender.max_retry_wait,
            ),
            limiter=self.rate_limiter(),
            tenant=tenant,
            page_size=s.ingest.page_size,
        )

    def client_for(self, tenant: str, api: ApiKind | None = None) -> DefenderClient:
        """The API client of one tenant as the app (built once per tenant and API surface).

        ``api``: a per-tenant override of ``DEFENDER_API`` (the tenant registry's ``Api``).
        """
        api = api or self.settings.defender.api
        key = tenant if api == self.settings.defender.api else f"{tenant}|{api}"
        scope = _with_api(self.settings, api).defender.api_scope
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                token = self.tokens.for_tenant(tenant, scope)
                client = self.defender_client(tenant, token, api=api)
                self._clients[key] = client
            return client

    def user_client_for(self, tenant: str) -> DefenderClient:
        """An API client acting as the user signed in with ``python -m shared login``."""
        s = self.settings
        token = cli_token_source(s, tenant, s.defender.api_scope, http_client=self.session)
        return self.defender_client(tenant, token)

    def obo_client(self, tenant: str, caller_token: str, claims: CallerClaims) -> DefenderClient:
        """An API client acting on behalf of an HTTP caller, with the Entra token they were
        authenticated by (validated on arrival: not validated again). Whether the caller may
        act in ``tenant`` is the HTTP face's decision (``shared.api.app.user_client``)."""
        obo = self.on_behalf_of()
        scope = self.settings.defender.api_scope
        return self.defender_client(tenant, lambda: obo.token(caller_token, scope, claims=claims))

    def tenant_registry(self) -> TenantRegistry:
        """The tenants to serve: ``INGEST_TENANTS`` merged with the registry table."""
        table = self.table_service.get_table_client(self.settings.storage.tenant_table)
        return TenantRegistry(self.settings.tenants, table)

    def enabled_tenants(self) -> tuple[str, ...]:
        """Ids of the enabled tenants of the registry."""
        return tuple(e.tenant_id for e in self.tenant_registry().enabled())

    def caller_validator(self) -> CallerTokenValidator:
        """The validator of HTTP callers' tokens (one per process: it caches the home tenant's
        signing keys): home tenant only, this cloud's issuers, this API's audiences."""
        with self._lock:
            if self._validator is None:
                s = self.settings
                v1_issuer, _ = s.defender.cloud.token_issuers(s.identity.tenant_id)
                self._validator = CallerTokenValidator(
                    authority_url=s.defender.authority_url,
                    issuer_hosts=(s.defender.cloud.authority_url, s.defender.authority_url),
                    audiences=s.api_audiences,
                    session=self.session,
                    clock=self.clock,
                    # callers come from the home tenant only; a token naming any other tenant
                    # is refused before a key is fetched, so it costs no outbound call
                    tenant_allowed=lambda tid: tid == s.identity.tenant_id,
                    v1_issuer_host=v1_issuer.removesuffix(f"/{s.identity.tenant_id}/"),
                )
            return self._validator

    def once(self, key: str, build: Callable[[], _T]) -> _T:
        """The object ``build`` makes, built once per process under ``key``: how a face keeps
        what it wires from these services (the HTTP API's backend and authenticator) without
        the composition root importing the face, and how a part that is dear to build (the push
        sender's TLS context) is shared by every invocation."""
        with self._lock:
            if key in self._faces:
                return self._faces[key]  # type: ignore[no-any-return]
        made = build()
        with self._lock:
            return self._faces.setdefault(key, made)  # type: ignore[no-any-return]

    def on_behalf_of(self) -> OnBehalfOfProvider:
        """The user-context provider for HTTP callers (one per process, built on first use)."""
        validator = self.caller_validator()
        with self._lock:
            if self._obo is None:
                self._obo = OnBehalfOfProvider(self.tokens, validator=validator)
            return self._obo

    def log_http_auth_notice(self) -> None:
        """Warn at start-up when the HTTP API admits key holders to every tenant, and when a
        retired setting is still set (it is not obeyed)."""
        for note, fix in http_auth_notes(self.settings):
            log.warning("%s; %s", note, fix)

    def ingestor(
        self,
        *,
        notify: Notify | None = None,
        api: ApiKind | None = None,
        lookback: timedelta | None = None,
    ) -> Ingestor:
        """The ingestion use case wired to real storage, as the app (never as a user: see
        ``shared.usecases.ingest``). ``notify`` hears of each answer's new versions before they are
        stored (default: the push outbox, ``shared.usecases.push.outbox``, when ``API_SIGNING_KEY``
        is
        set); ``api``, ``lookback``: a tenant's overrides (tenant registry).
        Each call is one run: it logs the API notice."""
        self.log_api_notice()

        self._ensure_storage()
        # None unless APPLICATIONINSIGHTS_CONNECTION_STRING is set
        health = recorder(credential=None if self.settings.emulator else self.credential)
        s = self.settings
        if notify is None and s.http.signing_key is not None:
            notify = self.push_outbox()  # a queue write per answer while anyone subscribes
        return Ingestor(
            source_for=functools.partial(self.client_for, api=api),
            stores=self.ingest_stores(),
            options=RunOptions.of(s.ingest, lookback=lookback),
            clock=self.clock,
            notify=notify,
            observe=None if health is None else health.record,
        )

    def ingest_stores(self) -> IngestStores:
        """Where ingestion keeps what it read, on the data account (the containers and the
        table are made on first use): the archive, the latest-state table, checkpoints, the
        page journal, the quarantine and the per-tenant lease."""
        self._ensure_storage()
        data = self.blob_service.get_container_client(INCIDENT_CONTAINER)
        state = self.blob_service.get_container_client(STATE_CONTAINER)
        table = self.table_service.get_table_client(INCIDENT_TABLE)
        lease_seconds = self.settings.ingest.lease_seconds
        return IngestStores(
            archive=IncidentArchive(data),
            table=IncidentTable(table),
            checkpoints=WatermarkStore(state),
            journal=PageJournal(state),
            quarantine=Quarantine(data),
            lease_for=lambda tenant: TenantLock(state, tenant, lease_seconds=lease_seconds),
        )

    # ------------------------------------------------------------------ partner scale

    def ingest_queue(self) -> IngestQueue:
        """The ``defender-ingest`` queue and its poison queue (see ``shared.storage.queue``)."""

        service = self.queue_service
        if service is None:
            raise RuntimeError("no queue service configured")
        with self._lock:
            if self._ingest_queue is None:
                self._ingest_queue = IngestQueue(service)
            return self._ingest_queue

    def run_states(self) -> RunStateStore:
        """Per-tenant run state (queued marker, last result, consent) in the registry table."""

        self._ensure_registry()
        table = self.table_service.get_table_client(self.settings.storage.tenant_table)
        return RunStateStore(table, clock=self.clock)

    def fanout(self) -> Fanout:
        """The partner-scale use case: timer fan-out, queue handler, status."""
        state = self.blob_service.get_container_client(STATE_CONTAINER)

        def ingestor_for(entry: TenantEntry) -> Ingestor:
            lookback = timedelta(days=entry.lookback_days) if entry.lookback_days else None
            return self.ingestor(api=entry.api, lookback=lookback)

        return Fanout(
            settings=self.settings,
            registry=self.tenant_registry(),
            states=self.run_states(),
            queue=self.ingest_queue(),
            ingestor_for=ingestor_for,
            park_for=self.rate_limiter().wait_estimate,
            running=lambda: leased_tenants(state),
            running_one=lambda tenant: tenant in leased_tenants(state, tenant),
            clock=self.clock,
        )

    def _ensure_registry(self) -> None:
        """Create the tenant registry table on first use (idempotent)."""

        with self._lock:
            if self._registry_ready:
                return
            try:
                self.table_service.create_table_if_not_exists(self.settings.storage.tenant_table)
            except AzureError as exc:
                raise StorageError(
                    f"could not prepare the tenant registry table ({type(exc).__name__}); check "
                    "TENANT_REGISTRY_TABLE and the identity's Storage Table Data Contributor role"
                ) from exc
            self._registry_ready = True

    # ------------------------------------------------------------------ HTTP API

    def registered_tenants(self) -> tuple[str, ...]:
        """The enabled tenants, re-read from the registry at most every 60 seconds."""

        now = time.monotonic()
        cached = self._registered
        if cached is None or now - cached[0] > REGISTRY_TTL_SECONDS:
            cached = (now, self.enabled_tenants())
            self._registered = cached
        return cached[1]

    def record_consent(self, tenant: str, when: datetime) -> bool:
        """Record an admin consent in the registry; True when the tenant is served (a new
        tenant is enabled; a paused one stays paused)."""
        self._ensure_registry()
        entry = self.tenant_registry().record_consent(tenant, when)
        self._registered = None
        self.fanout().release_hold(tenant)  # a consent hold ends with the consent
        return entry.enabled

    def consent_states(self) -> ConsentStateStore:
        """The nonces of consent links already used (in the registry table)."""

        self._ensure_registry()
        return ConsentStateStore(
            self.table_service.get_table_client(self.settings.storage.tenant_table)
        )

    def jobs(self) -> JobStore:
        """The asynchronous hunting jobs (blobs of the data account)."""

        return JobStore(self.blob_service.get_container_client(JOB_CONTAINER))

    def queue(self, name: str) -> QueueSender:
        """A sender to one queue of the data account."""

        if self.queue_service is None:
            raise RuntimeError("no queue service configured")
        return QueueSender(self.queue_service, name)

    def push_keys(self) -> PushKeys | None:
        """The push keys (None without ``API_SIGNING_KEY``: push is off)."""

        s = self.settings
        if s.http.signing_key is None:
            return None
        return PushKeys(s.http.signing_key, s.http.signing_key_previous)

    def subscriptions(self) -> SubscriptionStore:
        """The push subscription store."""

        return SubscriptionStore(
            self.table_service.get_table_client(SUBSCRIPTION_TABLE), self.push_keys(), self.clock
        )

    def echo_marks(self) -> EchoMarks:
        """Where the bridge's own incident updates are marked (push loop protection)."""

        return EchoMarks(self.table_service.get_table_client(SUBSCRIPTION_TABLE), self.clock)

    def push_outbox(self) -> Outbox:
        """The ingestion hook that records changes on ``defender-push``."""

        queue = self.queue(PUSH_QUEUE)
        return Outbox(send=queue.send, store=self.subscriptions())

    def push_options(self) -> PushOptions:
        """The delivery settings."""

        s = self.settings
        return PushOptions(
            allowed=s.push.host_suffixes,
            allow_local=s.push.allow_local_receiver,
            timeout=s.push.timeout,
            max_attempts=s.push.max_attempts,
            retry_base=s.push.retry,
            max_retry_after=s.push.max_retry_after,
            gone_grace=s.push.gone_grace,
            deliver_own=s.push.deliver_own_updates,
        )

    def push_callbacks(self) -> Callbacks:
        """The callback check shared by subscribing and sending."""

        return Callbacks(self.push_options(), self.push_resolver or system_resolver)

    def push_backlog(self) -> PushBacklog:
        """The push queue and its poison queue, read by the CLI (outside the Functions host).

        Raises:
            ConfigError: no queue service is configured.
        """
        if self.queue_service is None:
            raise ConfigError("no queue service configured")
        return PushBacklog(self.queue_service, PUSH_QUEUE, PUSH_POISON_QUEUE)

    def push_worker(self) -> PushWorker:
        """The ``defender-push`` queue handler (fan-out and delivery)."""

        queue = self.queue(PUSH_QUEUE)
        # one TLS context per process: loading the CA bundle costs milliseconds, and this runs
        # for every delivery message (an SSLContext is safe to share between threads)
        context = self.once("push.tls", lambda: tls_context(self.settings.local.emulator_ca_cert))
        sender = (
            Sender(context=context, clock=self.clock)
            if self.push_connect is None
            else Sender(context=context, clock=self.clock, connect=self.push_connect)
        )
        return PushWorker(
            store=self.subscriptions(),
            marks=self.echo_marks(),
            requeue=lambda text, delay: queue.send(text, delay_seconds=delay),
            dead_letter=DeadLetter(self.blob_service.get_container_client(DEADLETTER_CONTAINER)),
            rows=table_rows(self.table_service.get_table_client(INCIDENT_TABLE)),
            callbacks=self.push_callbacks(),
            sender=sender,
            options=self.push_options(),
            clock=self.clock,
        )

    def mark_own_update(self, tenant: str, incident_id: str, started: datetime) -> None:
        """Mark an incident update the bridge just made (``PATCH /incidents/{id}``, ``incidents
        update``) so push does not deliver its versions back (loop protection). Never raises:
        the update is done, and a caller retrying it would repeat a comment."""

        if self.settings.http.signing_key is None or self.settings.push.deliver_own_updates:
            return
        try:
            self.echo_marks().mark(tenant, incident_id, started, self.clock())
        except BridgeError as exc:
            log.warning(
                "incident %s: could not mark the bridge's own update (%s); push may deliver it",
                incident_id,
                exc,
            )

    def checkpoints(self) -> WatermarkStore:
        """The checkpoint store (for ``check``)."""

        return WatermarkStore(self.blob_service.get_container_client(STATE_CONTAINER))

    def _ensure_storage(self) -> None:
        """Create the containers and table on first use (idempotent)."""

        with self._lock:
            if self._storage_ready:
                return
            try:
                for name in (INCIDENT_CONTAINER, STATE_CONTAINER):
                    create_container_if_not_exists(self.blob_service.get_container_client(name))
                self.table_service.create_table_if_not_exists(INCIDENT_TABLE)
            except AzureError as exc:
                raise StorageError(
                    f"could not prepare the data storage account ({type(exc).__name__}); check "
                    "DATA_STORAGE_ACCOUNT_NAME / DATA_STORAGE_CONNECTION_STRING and the identity's "
                    "Storage Blob/Table Data Contributor roles"
                ) from exc
            self._storage_ready = True


def _with_api(settings: Settings, api: ApiKind | None) -> Settings:
    """``settings`` for a tenant whose registry entry overrides ``DEFENDER_API``."""
    if api is None or api == settings.defender.api:
        return settings
    return dataclasses.replace(settings, defender=dataclasses.replace(settings.defender, api=api))


def build(settings: Settings, *, clock: Clock = utc_now) -> Services:
    """Wire real clients from settings (network I/O happens later, on first use)."""

    if settings.emulator:
        log.warning(
            "EMULATOR_CA_CERT is set: trusting a local test CA, with Entra instance discovery "
            "and Key Vault challenge-resource verification off. Never set it in Azure."
        )
    if settings.push.allow_local_receiver:
        log.warning(
            "API_PUSH_ALLOW_LOCAL_RECEIVER is on: push may deliver to https://localhost on any "
            "port. For the emulator and tests only; never set it in Azure."
        )
    credential = azure_credential(settings)
    session = build_session(ca_cert=settings.local.emulator_ca_cert)
    tokens = AppTokenProvider(
        client_id=settings.identity.client_id,
        authority_url=settings.defender.authority_url,
        credential=client_credential(settings, credential, clock),
        http_client=session,
        instance_discovery=not settings.emulator,
        consent_redirect_uri=settings.identity.consent_redirect_uri,
    )

    # one pool for the storage SDKs, sized for the threads of a fan-out worker (the SDK's
    # default pool of 10 makes concurrent tenants reopen connections)
    storage = storage_transport_options()
    if settings.storage.connection_string:
        conn = settings.storage.connection_string
        blob_service = BlobServiceClient.from_connection_string(conn, **storage)
        table_service = TableServiceClient.from_connection_string(conn, **storage)
        queue_service = QueueServiceClient.from_connection_string(conn, **storage)
    else:
        account, suffix = settings.storage.account_name, settings.defender.cloud.storage_suffix
        blob_service = BlobServiceClient(f"https://{account}.blob.{suffix}", credential, **storage)
        table_service = TableServiceClient(
            f"https://{account}.table.{suffix}", credential=credential, **storage
        )
        queue_service = QueueServiceClient(
            f"https://{account}.queue.{suffix}", credential, **storage
        )
    built = Services(
        settings=settings,
        clock=clock,
        session=session,
        tokens=tokens,
        blob_service=blob_service,
        table_service=table_service,
        queue_service=queue_service,
        credential=credential,
    )
    built.log_api_notice(run=False)  # every CLI run and every worker start
    built.log_http_auth_notice()
    return built


@functools.cache
def _storage_session() -> requests.Session:

    # the environment (proxies, CA bundle, netrc) read once per origin, not on every call
    session = SteadyEnvironmentSession()
    adapter = HTTPAdapter(pool_connections=STORAGE_POOL_SIZE, pool_maxsize=STORAGE_POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def storage_transport_options() -> dict[str, Any]:
    """Client options giving a storage SDK client the process's shared storage pool."""

    return {"transport": RequestsTransport(session=_storage_session(), session_owner=False)}


def device_code_sign_in(settings: Settings, tenant: str, *, out: TextIO) -> SignedIn:
    """Sign a user in to ``tenant`` with the device code flow, for the CLI's ``--as-user``
    (``shared.credentials.user.device_code_login``; Entra's instruction goes to ``out``). Needs
    the settings only, not the services: ``login`` works before storage is set up."""
    return device_code_login(settings, tenant, settings.defender.api_scope, out=out)


def client_credential(
    settings: Settings, credential: TokenCredential, clock: Clock
) -> ClientCredentialSource:
    """The app's client credential source for ``DEFENDER_CREDENTIAL_KIND``."""

    if settings.identity.credential_kind == "federated":
        return FederatedSource(credential, settings.defender.cloud.token_exchange_audience)

    vault_kwargs: dict[str, Any] = {}
    if settings.emulator:
        vault_kwargs = {
            "verify_challenge_resource": False,
            "connection_verify": str(settings.local.emulator_ca_cert),
        }
    vault = SecretClient(settings.identity.key_vault_url, credential, **vault_kwargs)
    if settings.identity.credential_kind == "certificate":
        # Key Vault serves a certificate's private key as the secret of the same name.
        name = settings.identity.certificate_name or ""
        item = KeyVaultSecret(
            vault,
            name,
            clock=clock,
            max_age=settings.identity.credential_cache,
            setting="DEFENDER_CERTIFICATE_NAME",
        )
        return CertificateSource(item)
    secret = KeyVaultSecret(
        vault,
        settings.identity.client_secret_name,
        clock=clock,
        max_age=settings.identity.credential_cache,
    )
    return SecretSource(secret)


def azure_credential(settings: Settings) -> TokenCredential:
    """The Function's identity: managed identity, or developer sign-in when asked for."""

    if settings.identity.azure_credential == "developer":
        return DefaultAzureCredential()
    return ManagedIdentityCredential(client_id=settings.identity.managed_identity_client_id)


class _CompositionRoot:
    """The process's ``Services``, built once however many threads ask for it at once.

    The Functions worker runs synchronous functions on a thread pool, so a queue batch or a
    burst of HTTP calls makes several first calls at the same moment; ``functools.cache`` would
    let each of them build (a credential, MSAL apps with their own token caches, rate limiters
    each believing it owns the quota). Here the first caller builds under a lock while the
    others wait for its result (checked again under the lock). A build that raises is not kept:
    the next call builds again, so a setting fixed later (or a passing fault) is picked up.
    """

    def __init__(self, factory: Callable[[], Services]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._built: Services | None = None
        self._generation = 0

    def __call__(self) -> Services:
        built = self._built
        if built is not None:  # the common path: no lock once built
            return built
        with self._lock:
            if self._built is None:
                self._built = self._factory()
            return self._built

    @property
    def built(self) -> bool:
        """Whether the services have been built in this process."""
        return self._built is not None

    @property
    def generation(self) -> int:
        """How many times the services were forgotten (``cache_clear``): a new generation is,
        to the app, a fresh process (``shared.worker`` reports the host settings again)."""
        return self._generation

    def cache_clear(self) -> None:
        """Forget the built services (tests: the next call builds from the environment)."""
        with self._lock:
            self._built = None
            self._generation += 1


#: the process-wide services, built from the environment on first call (``services()``)
services = _CompositionRoot(lambda: build(load()))
