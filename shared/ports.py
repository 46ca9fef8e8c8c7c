"""The ports: what the use cases need from the outside world, as Protocols.

A use case names its collaborators by these types; the composition root (``shared.bootstrap``)
passes the real adapters of the wings, which satisfy them structurally (they never import this
module), and tests pass the in-memory fakes of ``testkit.fakes`` and ``testkit.port_fakes``.
The value types that cross a port (an ``Incident``, a ``RowVersion``, a ``Watermark``...) are
the wings' own frozen dataclasses, so this floor sits above the wings and below the use cases
(docs/architecture.md).

Each Protocol lists only what its use case calls; the adapter named in its docstring documents
the contract (what is atomic, what raises).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.core.clock import Clock
from shared.core.surfaces import ApiKind
from shared.credentials.values import CallerClaims, CredentialInfo, CredentialKind
from shared.defender.model import Alert, HuntingResult, Incident, SlicePage
from shared.defender.operations import IncidentUpdate
from shared.defender.pages import PageResult
from shared.defender.queries import AlertQuery, IncidentQuery
from shared.defender.slices import SliceRequest
from shared.push.messages import Answer, Filter
from shared.push.target import Address, CallbackTarget
from shared.storage.values import (
    IngestMessage,
    Job,
    JournalNote,
    PlannedBlob,
    PoisonMessage,
    RowVersion,
    RunState,
    StoredVersion,
    Subscription,
    TenantEntry,
    Watermark,
)

__all__ = [
    "AppTokens",
    "CallerValidator",
    "Archive",
    "CheckpointStore",
    "Clock",
    "ConsentNonces",
    "CredentialSource",
    "DeadLetters",
    "Defender",
    "EchoMarkStore",
    "IncidentSource",
    "IncidentTable",
    "IngestQueue",
    "Jobs",
    "Journal",
    "Lease",
    "QuarantineStore",
    "RunStates",
    "SubscriptionAdmin",
    "Subscriptions",
    "TenantDirectory",
    "WebhookSender",
]


class IncidentSource(Protocol):
    """One tenant's incidents on one API surface (``shared.defender.client.DefenderClient``)."""

    api: ApiKind
    tenant: str

    @property
    def api_calls(self) -> int: ...
    @property
    def throttled_waits(self) -> int: ...
    def quota_wait(self) -> float: ...
    def incident_slice(
        self,
        request: SliceRequest,
        *,
        top: int,
        count: bool = False,
        expand: bool = True,
        deadline: float | None = None,
    ) -> SlicePage: ...
    def slice_pages(
        self, request: SliceRequest, *, top: int, expand: bool = True, deadline: float | None = None
    ) -> Iterator[SlicePage]: ...
    def exhaust_slice(
        self, request: SliceRequest, *, top: int, expand: bool = True, deadline: float | None = None
    ) -> Iterator[SlicePage]: ...
    def alerts_of_incidents(
        self, incident_ids: list[str], *, deadline: float | None = None
    ) -> tuple[dict[str, list[dict[str, Any]]], int]: ...


class Defender(Protocol):
    """One tenant's Defender API for on-demand calls: incidents, alerts, advanced hunting
    (``shared.defender.client.DefenderClient``)."""

    api: ApiKind
    base_url: str
    tenant: str

    def list_incidents(
        self, query: IncidentQuery | None = None, *, limit: int | None = None
    ) -> list[Incident]: ...
    def newest_page(
        self,
        query: IncidentQuery,
        *,
        before: tuple[int, str] | None,
        top: int,
        max_calls: int,
        rate: float | None = None,
        now: datetime | None = None,
        budget: float | None = None,
    ) -> PageResult[Incident]: ...
    def list_alerts(
        self, query: AlertQuery | None = None, *, limit: int | None = None
    ) -> list[Alert]: ...
    def get_incident(self, incident_id: str) -> Incident: ...
    def update_incident(self, incident_id: str, update: IncidentUpdate) -> Incident: ...
    def hunt(self, query: str, *, timespan: str | None = None) -> HuntingResult: ...


class Archive(Protocol):
    """Incident versions in blobs named by their content (``shared.storage.archive``)."""

    def upload(
        self, tenant: str, planned: Sequence[PlannedBlob], ingested_at: datetime
    ) -> list[StoredVersion]: ...
    def exists(self, name: str) -> bool: ...
    def read(self, name: str) -> list[StoredVersion] | None: ...


class QuarantineStore(Protocol):
    """Records ingestion cannot store, with why (``shared.storage.archive.Quarantine``)."""

    def put(self, tenant: str, api: str, record: Any, reason: str, at: datetime) -> str: ...


class IncidentTable(Protocol):
    """The latest version of each incident, written conditionally
    (``shared.storage.table.IncidentTable``)."""

    def lookup(self, tenant: str, incident_ids: Iterable[str]) -> dict[str, RowVersion]: ...
    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None: ...
    def forget(self, tenant: str, blob_name: str, incident_ids: Iterable[str]) -> int: ...
    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int: ...


class CheckpointStore(Protocol):
    """Per-tenant checkpoints with optimistic concurrency (``shared.storage.state``)."""

    def load(self, tenant: str) -> Watermark: ...
    def save(
        self,
        tenant: str,
        value: datetime,
        *,
        etag: str | None,
        saved_at: datetime,
        info: Mapping[str, Any] | None = None,
    ) -> str: ...


class Journal(Protocol):
    """The write-ahead note of an answer's blobs (``shared.storage.state.PageJournal``)."""

    def record(
        self,
        tenant: str,
        blob_names: list[str],
        created: Mapping[str, Sequence[str]] | None = None,
    ) -> None: ...
    def note(self, tenant: str) -> JournalNote: ...
    def clear(self, tenant: str) -> None: ...


class Lease(Protocol):
    """One tenant's lease for a whole run (``shared.storage.state.TenantLock``): entering
    raises ``ConflictError`` when another run holds it; ``ensure`` raises ``LeaseLostError``
    once it is lost."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    def ensure(self) -> None: ...


class TenantDirectory(Protocol):
    """The tenants to serve (``shared.storage.tenants.TenantRegistry``)."""

    def entries(self, *, include_disabled: bool = False) -> list[TenantEntry]: ...
    def enabled(self) -> list[TenantEntry]: ...
    def get(self, tenant_id: str) -> TenantEntry | None: ...


class RunStates(Protocol):
    """Each tenant's run row, with its "queued" marker
    (``shared.storage.tenants.RunStateStore``)."""

    def all(self) -> dict[str, RunState]: ...
    def get(self, tenant_id: str) -> RunState: ...
    def claim(self, state: RunState, *, until: datetime, reason: str) -> bool: ...
    def update(self, tenant_id: str, **changes: Any) -> None: ...


class IngestQueue(Protocol):
    """The ``defender-ingest`` queue and its poison queue (``shared.storage.queue``)."""

    def send(self, message: IngestMessage, *, delay: float = 0.0) -> None: ...
    def send_poison(self, text: str) -> None: ...
    def poison(self, *, limit: int = 32) -> list[PoisonMessage]: ...
    def poison_count(self) -> int: ...
    def pending_count(self) -> int: ...
    def drain_poison(self, *, hold_seconds: int = 300) -> Iterator[tuple[PoisonMessage, Any]]: ...
    def delete_poison(self, receipt: Any) -> None: ...
    def release_poison(self, receipt: Any) -> None: ...


class Subscriptions(Protocol):
    """Push subscriptions, callback URLs sealed
    (``shared.storage.subscriptions.SubscriptionStore``)."""

    def all(self) -> list[Subscription]: ...
    def get(self, subscription_id: str) -> Subscription | None: ...
    def update(
        self, subscription_id: str, change: Callable[[Subscription], Subscription | None]
    ) -> Subscription | None: ...
    def callback_url(self, sub: Subscription) -> str: ...
    def secret(self, sub: Subscription) -> str: ...


class EchoMarkStore(Protocol):
    """The versions this app wrote itself, so pushing them back is skipped
    (``shared.storage.subscriptions.EchoMarks``)."""

    def own(
        self, tenant: str, versions: Iterable[tuple[str, datetime]]
    ) -> set[tuple[str, datetime]]: ...


class WebhookSender(Protocol):
    """One signed POST to a checked address (``shared.push.transport.Sender``)."""

    def post(
        self,
        target: CallbackTarget,
        address: Address,
        body: bytes,
        headers: Mapping[str, str],
        *,
        cap: float,
    ) -> Answer: ...


class DeadLetters(Protocol):
    """Deliveries that kept failing (``shared.storage.push.DeadLetter``)."""

    def put(self, record: Mapping[str, Any]) -> None: ...
    def records(self, subscription: str | None = None) -> Iterable[tuple[str, dict[str, Any]]]: ...
    def delete(self, name: str) -> None: ...


class SubscriptionAdmin(Protocol):
    """Push subscriptions as the HTTP API manages them
    (``shared.storage.subscriptions.SubscriptionStore``)."""

    def find(self, url: str) -> Subscription | None: ...
    def save(self, url: str, host: str, flt: Filter) -> tuple[Subscription, bool]: ...
    def get(self, subscription_id: str) -> Subscription | None: ...
    def all(self) -> list[Subscription]: ...
    def remove(self, subscription_id: str) -> None: ...
    def secret(self, sub: Subscription) -> str: ...


class Jobs(Protocol):
    """Asynchronous hunting jobs (``shared.storage.jobs.JobStore``)."""

    def save(self, job: Job) -> None: ...
    def load(self, job_id: str) -> Job | None: ...


class ConsentNonces(Protocol):
    """The nonces of consent links already used (``shared.storage.tenants.ConsentStateStore``)."""

    def used(self, nonce: str) -> bool: ...
    def spend(self, nonce: str, *, tenant: str, when: datetime, expires: datetime) -> bool: ...
    def release(self, nonce: str) -> None: ...


class CredentialSource(Protocol):
    """The app's credential as ``check`` sees it
    (``shared.credentials.sources.ClientCredentialSource``)."""

    @property
    def kind(self) -> CredentialKind: ...
    def describe(self) -> CredentialInfo: ...


class CallerValidator(Protocol):
    """Validates an HTTP caller's access token (``shared.credentials.caller.CallerTokenValidator``):
    signature by the tenant's published keys, issuer, audience, lifetime.

    Raises ``CallerTokenError`` for a token that fails a check, ``AuthError`` when the keys
    cannot be fetched."""

    def validate(self, token: str) -> CallerClaims: ...


class AppTokens(Protocol):
    """The app's tokens per tenant (``shared.credentials.tokens.AppTokenProvider``)."""

    def token(self, tenant: str, scope: str) -> str: ...
    def consent_url(
        self, tenant: str, scope: str, redirect_uri: str | None = None, state: str | None = None
    ) -> str: ...


#: builds (or returns) the incident source of a tenant
SourceFor = Callable[[str], IncidentSource]
#: the lease of a tenant
LeaseFor = Callable[[str], Lease]
#: ``(tenant, versions about to be stored, ids the table has no row of)``
Notify = Callable[[str, Sequence[Incident], frozenset[str]], None]
