"""In-memory fakes of the ports of push, the HTTP API and the credential check (``shared.ports``).

The ingestion and fan-out fakes are in ``testkit.fakes``; these are the rest, kept apart so
neither module grows past a read. Each keeps the contract its adapter's docstring states (the
storage ones are checked against the real adapters on Azurite by
``tests/storage/test_fakes_contract.py``, ``MemoryDefender`` against the client on the emulator
by ``tests/defender/test_defender_fake_contract.py``; the sender, token and credential fakes,
whose adapters talk to the network, against their documented contract only, in
``tests/unit/test_port_fakes.py``):

- ``MemorySubscriptions`` (``SubscriptionStore``): one subscription per callback URL (subscribing
  again keeps the id, replaces the filter, clears the health); URLs sealed with the real
  ``PushKeys``; ``update`` applies a change to the current row, writes nothing when it returns
  None or the same row, and answers None for a subscription that is gone;
- ``MemoryEchoMarks`` (``EchoMarks``): windows of the bridge's own updates, widened by the
  clock skew, pruned after ``ECHO_KEEP`` on the injected clock;
- ``MemoryDeadLetters`` (``DeadLetter``): one record per delivery (a repeat overwrites it), listed
  in name order like a blob listing;
- ``MemoryJobs`` (``JobStore``): last writer wins; an id not shaped like one is never found;
- ``MemoryConsentNonces`` (``ConsentStateStore``): spending is create-only, so of two spends of a
  nonce exactly one wins;
- ``ScriptedSender`` (``transport.Sender``): answers from a script, never raises, records each POST;
- ``FakeCredential`` and ``FakeAppTokens``: the credential ``check`` describes, tokens per tenant
  (``ConsentError`` for a tenant that has not consented);
- ``MemoryDefender`` (``DefenderClient``'s on-demand calls): incidents, alerts and hunting results
  held in memory, ``NotFoundError`` for an unknown incident, every call recorded.

Each fake can be told to fail (``fail``: the next call of that operation raises
``StorageError``), which is what a test of "storage failed mid-way" needs.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared import ports
from shared.core.clock import Clock, format_utc
from shared.core.errors import ConfigError, ConsentError, NotFoundError, StorageError
from shared.core.settings import API_SIGNING_KEY_SETTING
from shared.core.surfaces import ApiKind
from shared.credentials.values import CredentialInfo, CredentialKind, admin_consent_url
from shared.defender.model import Alert, HuntingResult, Incident
from shared.defender.operations import IncidentUpdate
from shared.defender.pages import PageResult
from shared.defender.queries import AlertQuery, IncidentQuery
from shared.defender.slices import to_us
from shared.push.keys import PushKeys
from shared.push.messages import Answer, Filter, is_subscription_id
from shared.push.target import Address, CallbackTarget
from shared.storage.subscriptions import ECHO_KEEP, ECHO_SKEW
from shared.storage.values import Job, Subscription, revived, valid_job_id
from testkit import fakes

__all__ = [
    "FakeAppTokens",
    "FakeCredential",
    "MemoryConsentNonces",
    "MemoryDeadLetters",
    "MemoryDefender",
    "MemoryEchoMarks",
    "MemoryJobs",
    "MemorySubscriptions",
    "Post",
    "ScriptedSender",
]


class _Failures:
    """``fail("put")`` makes the next ``put`` raise ``StorageError`` (once)."""

    def __init__(self) -> None:
        self._armed: set[str] = set()

    def fail(self, operation: str) -> None:
        self._armed.add(operation)

    def check(self, operation: str) -> None:
        if operation in self._armed:
            self._armed.discard(operation)
            raise StorageError(f"injected failure of {operation}")


# ---------------------------------------------------------------------------- push storage


class MemorySubscriptions(_Failures):
    """``SubscriptionStore`` in memory (both the ``Subscriptions`` and ``SubscriptionAdmin``
    ports). ``keys`` None: push is off, and what needs a key raises ``ConfigError``."""

    def __init__(self, keys: PushKeys | None, clock: Clock) -> None:
        super().__init__()
        self._keys_ring = keys
        self._clock = clock
        self._rows: dict[str, Subscription] = {}
        self._lookup: dict[str, str] = {}  # keyed URL hash -> id
        self._etags = 0
        self._lock = threading.Lock()
        #: how many times ``update`` wrote (a test of "nothing changed, nothing written")
        self.writes = 0

    @property
    def _keys(self) -> PushKeys:
        if self._keys_ring is None:
            raise ConfigError(f"push needs the {API_SIGNING_KEY_SETTING} setting")
        return self._keys_ring

    def _stamp(self, sub: Subscription) -> Subscription:
        self._etags += 1
        return replace(sub, etag=f'W/"{self._etags}"')

    def callback_url(self, sub: Subscription) -> str:
        if sub.legacy_url is not None:
            return sub.legacy_url
        return self._keys.open(sub.sealed, sub.id)

    def secret(self, sub: Subscription) -> str:
        return self._keys.secret(sub.id)

    def save(self, url: str, host: str, flt: Filter) -> tuple[Subscription, bool]:
        self.check("save")
        now = format_utc(self._clock())
        with self._lock:
            found = self.find(url)
            if found is None:
                sub_id = self._keys.new_id(url)
                sub = self._stamp(Subscription(sub_id, host, flt, now, sealed=""))
                sub = replace(sub, sealed=self._keys.seal(url, sub_id))
                self._rows[sub_id] = sub
                self._lookup[self._keys.lookups(url)[0]] = sub_id
                return sub, True
            sealed = self._keys.seal(url, found.id)
            fresh = self._stamp(revived(replace(found, filter=flt, host=host, sealed=sealed)))
            self._rows[found.id] = fresh
            return fresh, False

    def find(self, url: str) -> Subscription | None:
        for key in self._keys.lookups(url):
            sub_id = self._lookup.get(key)
            if sub_id is not None and sub_id in self._rows:
                return self._rows[sub_id]
        return None

    def get(self, subscription_id: str) -> Subscription | None:
        self.check("get")
        if not is_subscription_id(subscription_id):
            return None
        return self._rows.get(subscription_id)

    def all(self) -> list[Subscription]:
        self.check("all")
        return list(self._rows.values())

    def remove(self, subscription_id: str) -> None:
        self._rows.pop(subscription_id, None)

    def update(
        self, subscription_id: str, change: Callable[[Subscription], Subscription | None]
    ) -> Subscription | None:
        self.check("update")
        with self._lock:
            current = self._rows.get(subscription_id)
            if current is None:
                return None
            updated = change(current)
            if updated is None or updated == current:
                return current
            # only the health columns are written, as the real MERGE does
            written = self._stamp(
                replace(
                    current,
                    status=updated.status,
                    breaker=updated.breaker,
                    gone_since=updated.gone_since,
                    last_success=updated.last_success,
                    last_failure=updated.last_failure,
                    last_error=updated.last_error,
                    dropped_at=updated.dropped_at,
                    drop_reason=updated.drop_reason,
                )
            )
            self._rows[subscription_id] = written
            self.writes += 1
            return updated


class MemoryEchoMarks(_Failures):
    """``EchoMarks`` in memory: (tenant, incident id) -> windows of the bridge's own updates."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self._windows: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}

    def mark(self, tenant: str, incident_id: str, started: datetime, finished: datetime) -> None:
        self.check("mark")
        now = self._clock()
        kept = [w for w in self._windows.get((tenant, incident_id), []) if w[1] > now - ECHO_KEEP]
        self._windows[(tenant, incident_id)] = [*kept, (started, finished)][-20:]

    def own(
        self, tenant: str, versions: Iterable[tuple[str, datetime]]
    ) -> set[tuple[str, datetime]]:
        self.check("own")
        return {
            (ident, when)
            for ident, when in versions
            if any(
                a - ECHO_SKEW <= when <= b + ECHO_SKEW
                for a, b in self._windows.get((tenant, ident), ())
            )
        }


class MemoryDeadLetters(_Failures):
    """``DeadLetter`` in memory: ``<subscription>/<delivery>.json`` -> record."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, dict[str, Any]] = {}

    def put(self, record: Mapping[str, Any]) -> None:
        self.check("put")
        name = f"{record['subscription']}/{record['delivery']}.json"
        # stored as JSON like the blob (what JSON cannot hold becomes text); the same delivery
        # again overwrites it
        self.blobs[name] = json.loads(json.dumps(record, default=str))

    def records(self, subscription: str | None = None) -> Iterable[tuple[str, dict[str, Any]]]:
        self.check("records")
        prefix = f"{subscription}/" if subscription else ""
        # a blob listing is in name order; a snapshot, so deleting while iterating is safe
        return [(n, dict(r)) for n, r in sorted(self.blobs.items()) if n.startswith(prefix)]

    def delete(self, name: str) -> None:
        self.blobs.pop(name, None)


# ---------------------------------------------------------------------------- API storage


class MemoryJobs(_Failures):
    """``JobStore`` in memory: last writer wins."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, str] = {}

    def save(self, job: Job) -> None:
        self.check("save")
        self.jobs[job.id] = json.dumps(asdict(job), default=str)  # as the blob holds it

    def load(self, job_id: str) -> Job | None:
        self.check("load")
        if not valid_job_id(job_id):
            return None
        raw = self.jobs.get(job_id)
        return None if raw is None else Job(**json.loads(raw))


class MemoryConsentNonces(_Failures):
    """``ConsentStateStore`` in memory: spending is create-only (one winner per nonce)."""

    def __init__(self) -> None:
        super().__init__()
        self.spent: dict[str, tuple[str, datetime, datetime]] = {}
        self._lock = threading.Lock()

    def used(self, nonce: str) -> bool:
        self.check("used")
        return nonce in self.spent

    def spend(self, nonce: str, *, tenant: str, when: datetime, expires: datetime) -> bool:
        self.check("spend")
        with self._lock:
            if nonce in self.spent:
                return False
            self.spent[nonce] = (tenant, when, expires)
            return True

    def release(self, nonce: str) -> None:
        # best effort in the real store too: a failure leaves the nonce spent, never raises
        self.spent.pop(nonce, None)


# ---------------------------------------------------------------------------- network


@dataclass(frozen=True)
class Post:
    """One POST a ``ScriptedSender`` received."""

    target: CallbackTarget
    address: Address
    body: bytes
    headers: Mapping[str, str]
    cap: float


@dataclass
class ScriptedSender:
    """``transport.Sender`` without a network: each POST takes the next answer of ``script``
    (then ``otherwise``), or asks ``answer(post)``; it never raises, like the real one."""

    script: list[Answer] = field(default_factory=list)
    otherwise: Answer = field(default_factory=lambda: Answer(200))
    answer: Callable[[Post], Answer] | None = None
    posts: list[Post] = field(default_factory=list)

    def post(
        self,
        target: CallbackTarget,
        address: Address,
        body: bytes,
        headers: Mapping[str, str],
        *,
        cap: float,
    ) -> Answer:
        sent = Post(target, address, body, dict(headers), cap)
        self.posts.append(sent)
        if self.answer is not None:
            return self.answer(sent)
        return self.script.pop(0) if self.script else self.otherwise


@dataclass
class FakeCredential:
    """A client credential source: ``version`` changes on rotation; ``describe`` raises
    ``error`` when set (a Key Vault that refuses)."""

    kind: CredentialKind = "secret"
    name: str = "defender-bridge-secret"
    version: str | None = "v1"
    expires_on: datetime | None = None
    error: Exception | None = None
    invalidations: int = 0

    def current(self) -> tuple[str, Any]:
        if self.error is not None:
            raise self.error
        return self.version or "federated", "not-a-real-secret"

    def invalidate(self) -> None:
        self.invalidations += 1

    def describe(self) -> CredentialInfo:
        if self.error is not None:
            raise self.error
        return CredentialInfo(self.kind, self.name, self.version, self.expires_on)


@dataclass
class FakeAppTokens:
    """App tokens per tenant: a tenant in ``consented`` gets a token holding the roles granted
    there (an unsigned JWT: only its claims are read, ``shared.credentials.claims``), the same
    on every call as MSAL's cache answers; any other tenant raises ``ConsentError`` carrying the
    admin-consent URL, as ``AppTokenProvider`` does for AADSTS65001."""

    consented: dict[str, tuple[str, ...]] = field(default_factory=dict)
    client_id: str = "00000000-0000-0000-0000-0000000000c1"
    authority_url: str = "https://login.microsoftonline.com"
    redirect_uri: str = "http://localhost:7071/api/consent/callback"
    requests: list[tuple[str, str]] = field(default_factory=list)

    def token(self, tenant: str, scope: str) -> str:
        self.requests.append((tenant, scope))
        if tenant not in self.consented:
            raise ConsentError(
                f"tenant {tenant}: the app is not consented there (AADSTS65001)",
                action=f"an admin of tenant {tenant} must grant admin consent: "
                + self.consent_url(tenant, scope),
                tenant=tenant,
            )
        claims = {
            "aud": scope.removesuffix("/.default"),
            "tid": tenant,
            "appid": self.client_id,
            "roles": list(self.consented[tenant]),
        }
        return ".".join(
            _b64(part) for part in ({"alg": "none", "typ": "JWT"}, claims, "not-signed")
        )

    def consent_url(
        self, tenant: str, scope: str, redirect_uri: str | None = None, state: str | None = None
    ) -> str:
        return admin_consent_url(
            self.authority_url,
            tenant,
            self.client_id,
            scope,
            redirect_uri or self.redirect_uri,
            state,
        )


def _b64(part: object) -> str:
    text = part if isinstance(part, str) else json.dumps(part)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ---------------------------------------------------------------------------- Defender


class MemoryDefender:
    """One tenant's Defender for on-demand calls, in memory. ``calls`` names each call made
    (a test of "checked before any call" reads it)."""

    def __init__(
        self,
        tenant: str,
        incidents: Iterable[Incident] = (),
        *,
        api: ApiKind = "graph",
        clock: Clock | None = None,
        alerts: Iterable[Alert] = (),
        hunting: Callable[[str, str | None], HuntingResult] | None = None,
    ) -> None:
        self.tenant = tenant
        self.api: ApiKind = api
        self.base_url = (
            "https://graph.microsoft.com"
            if api == "graph"
            else "https://api.security.microsoft.com"
        )
        self.incidents = {i.id: i for i in incidents}
        self.alerts = list(alerts)
        self._clock = clock
        self._hunting = hunting
        self.calls: list[str] = []

    def list_incidents(
        self, query: IncidentQuery | None = None, *, limit: int | None = None
    ) -> list[Incident]:
        self.calls.append("list_incidents")
        found = [i for i in self.incidents.values() if query is None or query.matches(i)]
        return found[:limit] if limit is not None else found

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
    ) -> PageResult[Incident]:
        self.calls.append("newest_page")

        def key(incident: Incident) -> tuple[int, str]:
            return (to_us(incident.last_update), incident.id)

        ordered = sorted(
            (i for i in self.incidents.values() if query.matches(i)), key=key, reverse=True
        )
        below = [i for i in ordered if before is None or key(i) < before]
        page = below[:top]
        following = key(page[-1]) if len(below) > top else None
        return PageResult(page, following, rate, 1)

    def list_alerts(
        self, query: AlertQuery | None = None, *, limit: int | None = None
    ) -> list[Alert]:
        self.calls.append("list_alerts")
        found = [a for a in self.alerts if query is None or query.matches(a)]
        return found[:limit] if limit is not None else found

    def get_incident(self, incident_id: str) -> Incident:
        self.calls.append("get_incident")
        try:
            return self.incidents[incident_id]
        except KeyError:
            raise NotFoundError(f"incident {incident_id} not found", status=404) from None

    def update_incident(self, incident_id: str, update: IncidentUpdate) -> Incident:
        self.calls.append("update_incident")
        current = self.get_incident(incident_id)
        self.calls.pop()  # one call, not two
        assigned = update.assigned_to
        changed = replace(
            current,
            status=update.status or current.status,
            assigned_to=current.assigned_to if assigned is None else (assigned or None),
            classification=update.classification or current.classification,
            determination=update.determination or current.determination,
            tags=current.tags if update.tags is None else tuple(update.tags),
            last_update=self._clock()
            if self._clock
            else current.last_update + timedelta(seconds=1),
        )
        self.incidents[incident_id] = changed
        return changed

    def hunt(self, query: str, *, timespan: str | None = None) -> HuntingResult:
        self.calls.append("hunt")
        if self._hunting is None:
            return HuntingResult(("Query",), ("string",), ({"Query": query},), self.api)
        return self._hunting(query, timespan)


def _conformance(keys: PushKeys, clock: Clock) -> Sequence[object]:
    """mypy checks here that each fake (of this module and of ``testkit.fakes``) satisfies its
    port; a test calls it so it stays callable."""
    archive: ports.Archive = fakes.MemoryArchive()
    quarantine: ports.QuarantineStore = fakes.MemoryQuarantine()
    table: ports.IncidentTable = fakes.MemoryTable()
    checkpoints: ports.CheckpointStore = fakes.MemoryCheckpoints()
    journal: ports.Journal = fakes.MemoryJournal()
    lease: ports.Lease = fakes.MemoryLeases().for_tenant("t")
    directory: ports.TenantDirectory = fakes.MemoryDirectory()
    runs: ports.RunStates = fakes.MemoryRunStates()
    queue: ports.IngestQueue = fakes.MemoryQueue()
    source: ports.IncidentSource = fakes.FakeIncidentSource("t")
    ingestion = (archive, quarantine, table, checkpoints, journal, lease, directory, runs, queue)
    subscriptions: ports.Subscriptions = MemorySubscriptions(keys, clock)
    admin: ports.SubscriptionAdmin = MemorySubscriptions(keys, clock)
    marks: ports.EchoMarkStore = MemoryEchoMarks(clock)
    dead: ports.DeadLetters = MemoryDeadLetters()
    jobs: ports.Jobs = MemoryJobs()
    nonces: ports.ConsentNonces = MemoryConsentNonces()
    sender: ports.WebhookSender = ScriptedSender()
    credential: ports.CredentialSource = FakeCredential()
    tokens: ports.AppTokens = FakeAppTokens()
    defender: ports.Defender = MemoryDefender("t")
    return (
        *ingestion,
        source,
        subscriptions,
        admin,
        marks,
        dead,
        jobs,
        nonces,
        sender,
        credential,
        tokens,
        defender,
    )
