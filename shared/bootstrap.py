"""Composition root: the one place that builds real clients, once per process, on first use.

Nothing here runs at import time. ``services()`` parses the settings and wires the object graph
once per process, however many threads call it first at the same time (single-flight), so the
Functions worker and the CLI reuse one HTTP pool, one Key Vault client, one MSAL app per tenant
(with its token cache), one API client per tenant and one set of rate limiters.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.clock import Clock, utc_now
from shared.invocation import InvocationExecutor
from shared.settings import ApiKind, Settings, load

if TYPE_CHECKING:  # real types for readers and mypy; imported lazily at run time
    import requests
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    from shared.api.access import Authenticator, Principal
    from shared.api.backend import Backend
    from shared.credentials.caller import CallerTokenValidator
    from shared.credentials.sources import ClientCredentialSource
    from shared.credentials.tokens import AppTokenProvider
    from shared.credentials.user import OnBehalfOfProvider
    from shared.defender.client import DefenderClient
    from shared.defender.limiter import RateLimiterRegistry
    from shared.fanout import Fanout
    from shared.ingest import Ingestor, Notify
    from shared.push.delivery import Callbacks, PushOptions, PushWorker
    from shared.push.keys import PushKeys
    from shared.push.outbox import Outbox
    from shared.push.store import EchoMarks, SubscriptionStore
    from shared.push.target import Resolver
    from shared.push.transport import Connect
    from shared.storage.queue import IngestQueue, QueueSender
    from shared.storage.state import WatermarkStore
    from shared.tenants import ConsentStateStore, RunStateStore, TenantRegistry

log = logging.getLogger(__name__)

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
    # HTTP API (issue 11)
    queue_service: QueueServiceClient | None = None
    _validator: CallerTokenValidator | None = None
    _authenticator: Authenticator | None = None
    _backend: Backend | None = None
    _registered: tuple[float, tuple[str, ...]] | None = None
    _api_notice_pending: bool = True  # build() logged it; the first run need not repeat it

    def log_api_notice(self, *, run: bool = True) -> None:
        """Warn (error after the date) when the configured API is retiring: the legacy API
        stops working on 2027-02-01 (``shared.retirement``). Called by ``build`` and at the
        start of every ingestion run; ``run=False`` is build's call."""
        from shared.retirement import api_notice

        if run and self._api_notice_pending:
            self._api_notice_pending = False
            return
        notice = api_notice(self.settings.api, self.clock())
        if notice.status != "ok":
            level = logging.ERROR if notice.status == "fail" else logging.WARNING
            log.log(level, "%s; %s", notice.detail, notice.fix)

    # partner scale (issue 10)
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
        from shared.defender.limiter import RateLimiterRegistry

        with self._limiter_lock:
            if self._limiter is None:
                self._limiter = RateLimiterRegistry(self.settings.rate_limits)
            return self._limiter

    def client_for(self, tenant: str, api: ApiKind | None = None) -> DefenderClient:
        """The API client of one tenant (built once per tenant and API surface).

        ``api``: a per-tenant override of ``DEFENDER_API`` (the tenant registry's ``Api``).
        """
        import dataclasses

        from shared.defender.client import DefenderClient, RetryPolicy

        limiter = self.rate_limiter()
        s = self.settings
        if api is not None and api != s.api:
            s = dataclasses.replace(s, api=api)
        key = tenant if s.api == self.settings.api else f"{tenant}|{s.api}"
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = DefenderClient(
                    session=self.session,
                    token=self.tokens.for_tenant(tenant, s.api_scope),
                    api=s.api,
                    base_url=s.api_url,
                    timeout=s.http_timeout,
                    retry=RetryPolicy(
                        max_attempts=s.api_max_attempts,
                        budget=s.api_time_budget,
                        max_wait=s.api_max_retry_wait,
                    ),
                    limiter=limiter,
                    tenant=tenant,
                    page_size=s.page_size,
                )
                self._clients[key] = client
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

    def caller_validator(self) -> CallerTokenValidator:
        """The validator of HTTP callers' tokens (one per process: it caches the home tenant's
        signing keys): home tenant only, this cloud's issuers, this API's audiences."""
        from shared.credentials.caller import CallerTokenValidator

        with self._lock:
            if self._validator is None:
                s = self.settings
                v1_issuer, _ = s.cloud.token_issuers(s.tenant_id)
                self._validator = CallerTokenValidator(
                    authority_url=s.authority_url,
                    issuer_hosts=(s.cloud.authority_url, s.authority_url),
                    audiences=s.api_audiences,
                    session=self.session,
                    clock=self.clock,
                    # callers come from the home tenant only; a token naming any other tenant
                    # is refused before a key is fetched, so it costs no outbound call
                    tenant_allowed=lambda tid: tid == s.tenant_id,
                    v1_issuer_host=v1_issuer.removesuffix(f"/{s.tenant_id}/"),
                )
            return self._validator

    def authenticator(self) -> Authenticator:
        """The HTTP API's authentication (``shared.api.access``), built on first use."""
        from shared.api.access import Authenticator

        with self._lock:
            if self._authenticator is None:
                s = self.settings
                self._authenticator = Authenticator(
                    mode=s.api_auth_mode,
                    validator=self.caller_validator,
                    tenant_roles=s.api_tenant_roles,
                    audience=s.api_audiences[0],
                )
            return self._authenticator

    def on_behalf_of(self) -> OnBehalfOfProvider:
        """The user-context provider for HTTP callers (one per process, built on first use)."""
        from shared.credentials.user import OnBehalfOfProvider

        validator = self.caller_validator()
        with self._lock:
            if self._obo is None:
                self._obo = OnBehalfOfProvider(self.tokens, validator=validator)
            return self._obo

    def log_http_auth_notice(self) -> None:
        """Warn at start-up when the HTTP API admits key holders to every tenant, and when a
        retired setting is still set (it is not obeyed)."""
        from shared.settings import RETIRED_SETTINGS

        if self.settings.api_auth_mode == "key":
            log.warning(
                "API_AUTH_MODE=key: the HTTP API admits any holder of a function key with "
                "every role in every registered tenant; use Entra ID tokens (API_AUTH_MODE=entra) "
                "unless one team owns every tenant"
            )
        for name in self.settings.retired_settings:
            log.warning("%s is set but no longer read: %s", name, RETIRED_SETTINGS[name])

    def ingestor(
        self,
        *,
        notify: Notify | None = None,
        api: ApiKind | None = None,
        lookback: timedelta | None = None,
    ) -> Ingestor:
        """The ingestion use case wired to real storage, as the app (never as a user: see
        ``shared.ingest``). ``notify`` hears of each answer's new versions before they are
        stored (default: the push outbox, ``shared.push.outbox``, when ``API_SIGNING_KEY`` is
        set); ``api``, ``lookback``: a tenant's overrides (issue 10).
        Each call is one run: it logs the API notice."""
        self.log_api_notice()
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
        if notify is None and s.api_signing_key is not None:
            notify = self.push_outbox()  # a queue write per answer while anyone subscribes
        return Ingestor(
            client_for=functools.partial(self.client_for, api=api),
            archive=IncidentArchive(data),
            table=IncidentTable(table),
            watermarks=WatermarkStore(state),
            journal=PageJournal(state),
            quarantine=Quarantine(data),
            lock_for=lambda tenant: TenantLock(state, tenant, lease_seconds=s.lease_seconds),
            clock=self.clock,
            lookback=lookback or s.lookback,
            overlap=s.overlap,
            page_size=s.page_size,
            safety_lag=s.safety_lag,
            time_budget=s.time_budget,
            lag_warning=s.lag_warning,
            notify=notify,
            observe=None if health is None else health.record,
        )

    # ------------------------------------------------------------------ partner scale (issue 10)

    def ingest_queue(self) -> IngestQueue:
        """The ``defender-ingest`` queue and its poison queue (see ``shared.storage.queue``)."""
        from shared.storage.queue import IngestQueue

        service = self.queue_service
        if service is None:
            raise RuntimeError("no queue service configured")
        with self._lock:
            if self._ingest_queue is None:
                self._ingest_queue = IngestQueue(service)
            return self._ingest_queue

    def run_states(self) -> RunStateStore:
        """Per-tenant run state (queued marker, last result, consent) in the registry table."""
        from shared.tenants import RunStateStore

        self._ensure_registry()
        table = self.table_service.get_table_client(self.settings.tenant_table)
        return RunStateStore(table, clock=self.clock)

    def fanout(self) -> Fanout:
        """The partner-scale use case: timer fan-out, queue handler, status (issue 10)."""
        from shared.fanout import Fanout

        return Fanout.from_services(self)

    def _ensure_registry(self) -> None:
        """Create the tenant registry table on first use (idempotent)."""
        from azure.core.exceptions import AzureError

        from shared.errors import StorageError

        with self._lock:
            if self._registry_ready:
                return
            try:
                self.table_service.create_table_if_not_exists(self.settings.tenant_table)
            except AzureError as exc:
                raise StorageError(
                    f"could not prepare the tenant registry table ({type(exc).__name__}); check "
                    "TENANT_REGISTRY_TABLE and the identity's Storage Table Data Contributor role"
                ) from exc
            self._registry_ready = True

    def _enqueue(self, request: Any) -> None:
        outcome = self.fanout().enqueue(request.tenant, reason=request.reason, since=request.since)
        if outcome != "queued":
            log.info("tenant %s not queued again: %s", request.tenant, outcome)

    # ------------------------------------------------------------------ HTTP API (issue 11)

    def registered_tenants(self) -> tuple[str, ...]:
        """The enabled tenants, re-read from the registry at most every 60 seconds."""
        import time

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
        self.fanout().release_hold(tenant)  # issue 10: a consent hold ends with the consent
        return entry.enabled

    def prove_consent(self, tenant: str) -> tuple[str, ...]:
        """Prove the app is consented in ``tenant``: a token asked of Entra now with the app's
        credential against that tenant's authority, issued by that tenant. Returns the
        token's application roles (the token itself is dropped).

        Raises:
            ConsentError: the app is not consented there.
            AuthError: another refusal, or Entra ID could not be reached.
        """
        from shared.credentials.claims import ClaimsError, decode_claims
        from shared.errors import AuthError

        token = self.tokens.fresh_token(tenant, self.settings.api_scope)
        try:
            claims = decode_claims(token)
        except ClaimsError as exc:
            raise AuthError(f"tenant {tenant}: the token is not readable ({exc})") from None
        if claims.tenant != tenant:
            raise AuthError(
                f"tenant {tenant}: Entra issued the token in another tenant", error="wrong_tenant"
            )
        return claims.roles

    def consent_states(self) -> ConsentStateStore:
        """The nonces of consent links already used (in the registry table)."""
        from shared.tenants import ConsentStateStore

        self._ensure_registry()
        return ConsentStateStore(self.table_service.get_table_client(self.settings.tenant_table))

    def user_client(self, caller: Principal, tenant: str) -> DefenderClient:
        """An API client acting on behalf of an HTTP caller (their own Entra token, validated
        on arrival: it is not validated again) in ``tenant``, which must be the tenant of the
        caller's token."""
        from shared.api.http import ApiError
        from shared.defender.client import DefenderClient, RetryPolicy

        obo = self.on_behalf_of()
        claims, caller_token = caller.claims, caller.token
        if claims is None or caller_token is None:
            raise ApiError(
                401,
                "caller_token_required",
                "context=user needs the caller's Entra access token for this app in "
                "'Authorization: Bearer ...'",
                {"WWW-Authenticate": "Bearer"},
            )
        if not claims.is_user:
            raise ApiError(
                403,
                "not_a_user",
                "context=user acts as the signed-in user: this token is an app's or a managed "
                "identity's (use context=app)",
            )
        if claims.tenant != tenant:
            raise ApiError(
                403,
                "tenant_forbidden",
                f"the caller's token is from tenant {claims.tenant}, not {tenant}",
            )
        s = self.settings
        return DefenderClient(
            session=self.session,
            token=lambda: obo.token(caller_token, s.api_scope, claims=claims),
            api=s.api,
            base_url=s.api_url,
            timeout=s.http_timeout,
            retry=RetryPolicy(max_attempts=s.api_max_attempts, budget=s.api_time_budget),
            limiter=self.rate_limiter(),
            tenant=tenant,
            page_size=s.page_size,
        )

    def queue(self, name: str) -> QueueSender:
        """A sender to one queue of the data account."""
        from shared.storage.queue import QueueSender

        if self.queue_service is None:
            raise RuntimeError("no queue service configured")
        return QueueSender(self.queue_service, name)

    def push_keys(self) -> PushKeys | None:
        """The push keys (None without ``API_SIGNING_KEY``: push is off)."""
        from shared.push.keys import PushKeys

        s = self.settings
        if s.api_signing_key is None:
            return None
        return PushKeys(s.api_signing_key, s.api_signing_key_previous)

    def subscriptions(self) -> SubscriptionStore:
        """The push subscription store."""
        from shared.push.store import SUBSCRIPTION_TABLE, SubscriptionStore

        return SubscriptionStore(
            self.table_service.get_table_client(SUBSCRIPTION_TABLE), self.push_keys(), self.clock
        )

    def echo_marks(self) -> EchoMarks:
        """Where the bridge's own incident updates are marked (push loop protection)."""
        from shared.push.store import SUBSCRIPTION_TABLE, EchoMarks

        return EchoMarks(self.table_service.get_table_client(SUBSCRIPTION_TABLE), self.clock)

    def push_outbox(self) -> Outbox:
        """The ingestion hook that records changes on ``defender-push``."""
        from shared.push.outbox import PUSH_QUEUE, Outbox

        queue = self.queue(PUSH_QUEUE)
        return Outbox(send=queue.send, store=self.subscriptions())

    def push_options(self) -> PushOptions:
        """The delivery settings."""
        from shared.push.delivery import PushOptions

        s = self.settings
        return PushOptions(
            allowed=s.api_push_host_suffixes,
            allow_local=s.api_push_allow_local_receiver,
            timeout=s.api_push_timeout,
            max_attempts=s.api_push_max_attempts,
            retry_base=s.api_push_retry,
            max_retry_after=s.api_push_max_retry_after,
            gone_grace=s.api_push_gone_grace,
            deliver_own=s.api_push_deliver_own_updates,
        )

    def push_callbacks(self) -> Callbacks:
        """The callback check shared by subscribing and sending."""
        from shared.push.delivery import Callbacks
        from shared.push.target import system_resolver

        return Callbacks(self.push_options(), self.push_resolver or system_resolver)

    def push_worker(self) -> PushWorker:
        """The ``defender-push`` queue handler (fan-out and delivery)."""
        from shared.push.delivery import (
            DEADLETTER_CONTAINER,
            DeadLetter,
            PushWorker,
            table_rows,
        )
        from shared.push.outbox import PUSH_QUEUE
        from shared.push.transport import Sender, tls_context
        from shared.storage import INCIDENT_TABLE

        queue = self.queue(PUSH_QUEUE)
        context = tls_context(self.settings.emulator_ca_cert)
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
        from shared.errors import BridgeError

        if self.settings.api_signing_key is None or self.settings.api_push_deliver_own_updates:
            return
        try:
            self.echo_marks().mark(tenant, incident_id, started, self.clock())
        except BridgeError as exc:
            log.warning(
                "incident %s: could not mark the bridge's own update (%s); push may deliver it",
                incident_id,
                exc,
            )

    def api_backend(self, *, in_process: bool = False) -> Backend:
        """The HTTP API's collaborators (built once). ``in_process``: hunting jobs run on this
        process's threads (``serve``) instead of the ``defender-hunting`` queue (Functions)."""
        from shared.api.backend import Backend
        from shared.api.jobs import JOB_CONTAINER, JobStore
        from shared.api.ratelimit import CallerLimiter
        from shared.storage.queue import HUNTING_QUEUE

        with self._lock:
            if self._backend is not None:
                return self._backend
        # background work of an HTTP call logs with that call's invocation id
        pool = InvocationExecutor(max_workers=8, thread_name_prefix="api")
        hunting_queue = self.queue(HUNTING_QUEUE)

        def submit(job_id: str, delay: int) -> None:
            if in_process:
                from shared.api.handlers import run_queued_job

                timer = threading.Timer(delay, run_queued_job, (backend, job_id))
                timer.daemon = True
                timer.start()
            else:
                hunting_queue.send(json.dumps({"job": job_id}), delay_seconds=delay)

        backend = Backend(
            settings=self.settings,
            clock=self.clock,
            registered=self.registered_tenants,
            client_for=self.client_for,
            user_client_for=self.user_client,
            # issue 10: through the fan-out, so a tenant already queued is not queued twice
            enqueue_ingest=lambda request: self._enqueue(request),
            jobs=JobStore(self.blob_service.get_container_client(JOB_CONTAINER)),
            submit_job=submit,
            background=pool.submit,
            subscriptions=self.subscriptions(),
            callbacks=self.push_callbacks(),
            mark_own_update=self.mark_own_update,
            record_consent=self.record_consent,
            prove_consent=self.prove_consent,
            consent_states=self.consent_states,
            caller_limits=CallerLimiter(self.settings.api_caller_limits),
            ingest_status=lambda tenant: self.fanout().tenant_status(tenant),
        )
        with self._lock:
            if self._backend is None:
                self._backend = backend
            return self._backend

    def checkpoints(self) -> WatermarkStore:
        """The checkpoint store (for ``check``)."""
        from shared.storage import STATE_CONTAINER
        from shared.storage.state import WatermarkStore

        return WatermarkStore(self.blob_service.get_container_client(STATE_CONTAINER))

    def _ensure_storage(self) -> None:
        """Create the containers and table on first use (idempotent)."""
        from azure.core.exceptions import AzureError

        from shared.errors import StorageError
        from shared.storage import (
            INCIDENT_CONTAINER,
            INCIDENT_TABLE,
            STATE_CONTAINER,
            create_container_if_not_exists,
        )

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
    if settings.api_push_allow_local_receiver:
        log.warning(
            "API_PUSH_ALLOW_LOCAL_RECEIVER is on: push may deliver to https://localhost on any "
            "port. For the emulator and tests only; never set it in Azure."
        )
    credential = azure_credential(settings)
    session = build_session(ca_cert=settings.emulator_ca_cert)
    tokens = AppTokenProvider(
        client_id=settings.client_id,
        authority_url=settings.authority_url,
        credential=client_credential(settings, credential, clock),
        http_client=session,
        instance_discovery=not settings.emulator,
        consent_redirect_uri=settings.consent_redirect_uri,
    )
    from azure.storage.queue import QueueServiceClient

    # one pool for the storage SDKs, sized for the threads of a fan-out worker (the SDK's
    # default pool of 10 makes concurrent tenants reopen connections)
    storage = storage_transport_options()
    if settings.storage_connection_string:
        conn = settings.storage_connection_string
        blob_service = BlobServiceClient.from_connection_string(conn, **storage)
        table_service = TableServiceClient.from_connection_string(conn, **storage)
        queue_service = QueueServiceClient.from_connection_string(conn, **storage)
    else:
        account, suffix = settings.storage_account_name, settings.cloud.storage_suffix
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
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=STORAGE_POOL_SIZE, pool_maxsize=STORAGE_POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def storage_transport_options() -> dict[str, Any]:
    """Client options giving a storage SDK client the process's shared storage pool."""
    from azure.core.pipeline.transport import RequestsTransport

    return {"transport": RequestsTransport(session=_storage_session(), session_owner=False)}


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
