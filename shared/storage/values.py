"""The storage wing's values: what crosses a port or reaches a face, with no SDK.

The records the adapters of this wing read and write (an archived version and its blob, a table
row's version, a checkpoint, a journal note, an ingest message, a tenant and its run state, a
subscription, a hunting job), the names of the queues and containers, and the pure rules over
them (where a version is archived, whether a row already holds a version, what a queue message
says). The adapters (``archive``, ``table``, ``state``, ``queue``, ``tenants``,
``subscriptions``, ``jobs``, ``push``) import them from here; so do the ports, the use cases and
the faces, which thus load no Azure SDK (docs/architecture.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from shared.core.clock import format_utc, parse_utc
from shared.core.guids import guid
from shared.core.surfaces import ApiKind, surface
from shared.defender.model import Incident
from shared.push.messages import Breaker, Filter

# The archive (``archive``): where each version goes, decided before anything is written.


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """Where one incident version was written."""

    incident: Incident
    blob_name: str
    line: int


@dataclass(frozen=True, slots=True)
class PlannedBlob:
    """One blob about to be written: its name and the versions it will hold, in order."""

    name: str
    versions: tuple[Incident, ...]


def partition_of(tenant: str, incident: Incident) -> str:
    """The Hive-style folder of one version."""
    return f"incidents/tenant={tenant}/date={incident.last_update.date().isoformat()}"


def blob_name(folder: str, versions: Sequence[Incident]) -> str:
    """Deterministic name from the set of (id, last update) versions in the file."""
    keys = sorted(f"{i.id}@{format_utc(i.last_update)}" for i in versions)
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
    return f"{folder}/part-{digest}.ndjson.gz"


def plan(tenant: str, incidents: Sequence[Incident]) -> list[PlannedBlob]:
    """Group versions by partition and name each group's blob. Pure."""
    groups: dict[str, list[Incident]] = defaultdict(list)
    for incident in sorted(incidents, key=lambda i: (i.last_update, i.id)):
        groups[partition_of(tenant, incident)].append(incident)
    return [
        PlannedBlob(blob_name(folder, versions), tuple(versions))
        for folder, versions in sorted(groups.items())
    ]


def placed(planned: Sequence[PlannedBlob]) -> list[StoredVersion]:
    """Where each version of planned blobs goes (blob and line), before writing. Pure."""
    return [
        StoredVersion(i, blob.name, n) for blob in planned for n, i in enumerate(blob.versions, 1)
    ]


def quarantine_name(tenant: str, record: Any, day: str) -> str:
    """The blob of one quarantined record: its digest, so the same record lands once."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return f"quarantine/tenant={tenant}/date={day}/q-{digest}.json"


# The incident table (``table``, ``batch``).

#: the service's limit on operations in one entity-group transaction
TRANSACTION_SIZE = 100


@dataclass(frozen=True, slots=True)
class RowVersion:
    """What the table holds for one incident: its last update time, the API's text of it
    (``version``, "" on rows written before it was kept), the row's ETag and the blob its
    version is archived in (``blob``)."""

    last_update: datetime
    etag: str
    version: str = ""
    blob: str = ""


def version_text(incident: Incident) -> str:
    """The API's own last-update text of a version (exact, 7 digits)."""
    return str(incident.raw.get(surface(incident.api).last_update_field) or "")


def is_stored(row: RowVersion | None, incident: Incident) -> bool:
    """Whether the table already has this version or a newer one."""
    if row is None:
        return False
    if row.version and row.version == version_text(incident):
        return True
    return row.last_update >= incident.last_update


# Checkpoints and the write-ahead journal (``state``).


@dataclass(frozen=True, slots=True)
class Watermark:
    """A tenant's checkpoint and the ETag it was read with (value None: never saved).

    ``info`` holds the rest of the document: ``ratePerHour`` (density seen), ``lastSuccess``,
    ``expandFailedAt`` (Graph ``$expand=alerts`` failed for this tenant), ``lastRun``.
    """

    value: datetime | None
    etag: str | None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rate_per_hour(self) -> float | None:
        """Incidents per hour a previous run saw (None: unknown)."""
        rate = self.info.get("ratePerHour")
        if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
            return float(rate)
        return None

    def time(self, key: str) -> datetime | None:
        """A timestamp field of ``info`` (None when absent or malformed)."""
        raw = self.info.get(key)
        try:
            return parse_utc(raw) if isinstance(raw, str) else None
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class JournalNote:
    """What a run noted before writing an answer: the blobs it was about to write, and for
    those whose rows it created first (``created``: blob name -> incident ids), the rows to
    take back should the blob be missing."""

    blobs: tuple[str, ...] = ()
    created: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# Queues (``queue``): names and the ingest message.

INGEST_QUEUE = "defender-ingest"


POISON_QUEUE = f"{INGEST_QUEUE}-poison"


#: the service's longest visibility delay on put: 7 days
#: (https://learn.microsoft.com/rest/api/storageservices/put-message#uri-parameters)
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600


HUNTING_QUEUE = "defender-hunting"


IngestReason = Literal["timer", "http", "backfill", "continue"]


REASONS: tuple[IngestReason, ...] = ("timer", "http", "backfill", "continue")


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """One ``defender-ingest`` message."""

    tenant: str
    reason: IngestReason
    since: datetime | None = None

    def to_json(self) -> str:
        """The message text."""
        since = format_utc(self.since) if self.since is not None else None
        return json.dumps({"tenant": self.tenant, "reason": self.reason, "since": since})

    @classmethod
    def from_json(cls, text: str) -> IngestRequest:
        """Parse a message (ValueError naming what is wrong)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the message is not a JSON object")
        tenant, reason, since = data.get("tenant"), data.get("reason"), data.get("since")
        tid = guid(tenant)
        if tid is None:
            raise ValueError("'tenant' is not a tenant GUID")
        if reason not in REASONS:
            raise ValueError(f"'reason' must be one of {', '.join(REASONS)}")
        if since is not None and not isinstance(since, str):
            raise ValueError("'since' must be an ISO-8601 time or null")
        return cls(tid, reason, parse_utc(since) if since else None)


class BadMessageError(ValueError):
    """A queue message is not a valid ingest message (the reason says why)."""


#: the ingest message; one class, whoever sends it (timer fan-out, HTTP API, CLI)
IngestMessage = IngestRequest


def parse_message(text: str | bytes) -> IngestMessage:
    """Parse a message body (JSON, or base64 of JSON as stored by a plain client).

    Raises:
        BadMessageError: not JSON, or a field is missing or malformed.
    """

    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        body = json.loads(raw)
    except ValueError:
        try:
            body = json.loads(base64.b64decode(raw, validate=True).decode("utf-8"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadMessageError("the message is not JSON") from None
    if not isinstance(body, dict):
        raise BadMessageError("the message is not a JSON object")
    unknown = set(body) - {"tenant", "reason", "since"}
    if unknown:
        raise BadMessageError(f"unknown field(s): {', '.join(sorted(unknown))}")
    tenant = body.get("tenant")
    tid = guid(tenant)
    if tid is None:
        raise BadMessageError("'tenant' must be a tenant GUID")
    reason = body.get("reason", "timer")
    if reason not in REASONS:
        raise BadMessageError(f"'reason' must be one of {', '.join(REASONS)}")
    since_raw = body.get("since")
    since: datetime | None = None
    if since_raw is not None:
        if not isinstance(since_raw, str):
            raise BadMessageError("'since' must be an ISO-8601 time or null")
        try:
            since = parse_utc(since_raw)
        except ValueError:
            raise BadMessageError("'since' must be an ISO-8601 time with a zone") from None
    return IngestRequest(tid, reason, since)


@dataclass(frozen=True, slots=True)
class PoisonMessage:
    """A message the host gave up on; ``message`` is None when it could not be parsed."""

    id: str
    text: str
    message: IngestMessage | None
    problem: str | None
    inserted_on: datetime | None
    dequeue_count: int

    @property
    def tenant(self) -> str | None:
        """The tenant of the message, when it parsed."""
        return self.message.tenant if self.message else None


# The tenant registry and run states (``tenants``).


@dataclass(frozen=True, slots=True)
class TenantEntry:
    """One tenant the app may serve."""

    tenant_id: str
    display_name: str | None = None
    enabled: bool = True
    #: "setting", "table" or "setting+table"
    source: str = "setting"
    #: per-tenant override of DEFENDER_API (None: the setting)
    api: ApiKind | None = None
    #: per-tenant override of INGEST_LOOKBACK_DAYS (None: the setting)
    lookback_days: int | None = None

    @property
    def label(self) -> str:
        """``Display name (id)`` or the id alone."""
        return f"{self.display_name} ({self.tenant_id})" if self.display_name else self.tenant_id


def merge(
    configured: Iterable[str], rows: Iterable[TenantEntry], *, include_disabled: bool = False
) -> list[TenantEntry]:
    """The registry: configured tenants first (in order), then table-only ones (the enabled
    ones, or all with ``include_disabled``). Pure."""
    by_id = {row.tenant_id: row for row in rows}
    out: list[TenantEntry] = []
    for tid in configured:
        row = by_id.pop(tid, None)
        out.append(
            TenantEntry(tid)
            if row is None
            else TenantEntry(
                tid,
                row.display_name,
                row.enabled,
                "setting+table",
                api=row.api,
                lookback_days=row.lookback_days,
            )
        )
    out.extend(row for row in by_id.values() if row.enabled or include_disabled)
    return out


#: the consent state of a tenant as its last run found it
ConsentState = str  # "ok" | "missing" | "unknown"


@dataclass(frozen=True, slots=True)
class RunState:
    """What the app knows about a tenant's runs; ``etag`` None when no row exists yet."""

    tenant_id: str
    etag: str | None = None
    queued_at: datetime | None = None
    queued_until: datetime | None = None
    queue_reason: str | None = None
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_result: str | None = None
    watermark: str | None = None
    last_incidents: int = 0
    last_api_calls: int = 0
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_at: datetime | None = None
    attempts: int = 0
    consent: ConsentState = "unknown"
    hold_until: datetime | None = None
    hold_reason: str | None = None

    def queued(self, now: datetime) -> bool:
        """A message for this tenant is queued or running (its marker has not expired)."""
        return self.queued_until is not None and self.queued_until > now

    def held(self, now: datetime) -> bool:
        """The tenant is held back (no consent, or poisoned) until ``hold_until``."""
        return self.hold_until is not None and self.hold_until > now


# The push worker's storage (``push``).

DEADLETTER_CONTAINER = "defender-push-deadletter"


#: the incident table row of ``(tenant, incident id)`` as an incident row with its version, or
#: None (``ref`` items: incidents too large for a message)
RowReader = Callable[[str, str], tuple[dict[str, Any], str] | None]


# Asynchronous hunting jobs (``jobs``).

JOB_CONTAINER = "defender-hunting-jobs"


FINISHED = ("done", "failed")
JobState = Literal["queued", "running", "done", "failed"]


@dataclass(frozen=True)
class Job:
    """A hunting job."""

    id: str
    tenant: str
    query: str
    timespan: str | None
    format: Literal["json", "csv"]
    max_rows: int | None
    context: Literal["app", "user"]
    state: JobState
    created: str
    updated: str
    status: int | None = None
    result: Any = None

    @classmethod
    def new(
        cls,
        *,
        tenant: str,
        query: str,
        timespan: str | None,
        fmt: Literal["json", "csv"],
        max_rows: int | None,
        context: Literal["app", "user"],
        now: datetime,
    ) -> Job:
        """A queued job with a fresh unguessable id."""
        stamp = format_utc(now)
        return cls(
            id=secrets.token_hex(16),
            tenant=tenant,
            query=query,
            timespan=timespan,
            format=fmt,
            max_rows=max_rows,
            context=context,
            state="queued",
            created=stamp,
            updated=stamp,
        )

    def finished(self, status: int, result: Any, now: datetime) -> Job:
        """This job with its answer."""
        state: JobState = "done" if status < 400 else "failed"
        return replace(self, state=state, status=status, result=result, updated=format_utc(now))

    def moved(self, state: JobState, now: datetime) -> Job:
        """This job in another state."""
        return replace(self, state=state, updated=format_utc(now))

    def age_seconds(self, now: datetime) -> float:
        """Seconds since the last change."""
        return (now - parse_utc(self.updated)).total_seconds()


def valid_job_id(text: str) -> bool:
    """Whether ``text`` has the shape of a job id (32 lowercase hex digits)."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


# Push subscriptions (``subscriptions``).

ACTIVE, DROPPED = "active", "dropped"


def _text(value: datetime | None) -> str:
    return format_utc(value) if value is not None else ""


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscriber, its filter and its health (never its callback URL in clear)."""

    id: str
    host: str
    filter: Filter
    created: str
    sealed: str = field(default="", repr=False)
    legacy_url: str | None = field(default=None, repr=False)
    status: str = ACTIVE
    breaker: Breaker = Breaker()
    gone_since: datetime | None = None
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None
    dropped_at: datetime | None = None
    drop_reason: str | None = None
    etag: str = field(default="", repr=False)

    @property
    def tenants(self) -> tuple[str, ...] | None:
        """The tenants of the filter (None: every tenant)."""
        return self.filter.tenants

    def describe(self) -> dict[str, Any]:
        """What its owner sees (the host, never the URL: its query holds a credential)."""
        return {"id": self.id, "host": self.host, **self.filter.to_json(), "created": self.created}

    def health(self, now: datetime) -> dict[str, Any]:
        """Its delivery health."""
        open_until = self.breaker.open_until if self.breaker.is_open(now) else None
        return {
            "status": self.status,
            "breaker": "open" if open_until else "closed",
            "breakerOpenUntil": _text(open_until) or None,
            "consecutiveFailures": self.breaker.failures,
            "receiverGoneSince": _text(self.gone_since) or None,
            "lastSuccess": _text(self.last_success) or None,
            "lastFailure": _text(self.last_failure) or None,
            "lastError": self.last_error,
            "droppedAt": _text(self.dropped_at) or None,
            "dropReason": self.drop_reason,
            "sealed": self.legacy_url is None,
        }


def revived(sub: Subscription) -> Subscription:
    """``sub`` active again with a clean health (a new subscribe, a redrive)."""
    return replace(
        sub,
        status=ACTIVE,
        breaker=Breaker(),
        gone_since=None,
        dropped_at=None,
        drop_reason=None,
    )


def active(subscriptions: Sequence[Subscription]) -> list[Subscription]:
    """The subscriptions that still receive deliveries."""
    return [s for s in subscriptions if s.status == ACTIVE]
