"""Version storage: one answer's versions, stored exactly once, and recovery of a run that
stopped between its blobs and its table rows.

Per answer: records without an id or last-update time go to quarantine (counted, never
blocking); future last-update times are clamped to now + ``CLOCK_SKEW`` (logged) so one bad
clock cannot make a row unbeatable; in a tenant's first run, and once an answer of any run met
no stored row, answers are stored create-first (their rows in one atomic create-only
transaction, then their blobs, the rows noted in the journal); otherwise the ids are looked up
by point reads (rows the run read or wrote lately are known without a read); versions not
stored yet are noted in the journal, written to blobs, then recorded in the table in batched
conditional transactions.
``notify`` (push) hears of an answer's new versions before they are stored (create-first:
between the rows and the blobs, the rows deleted again should it fail): once a version is in
the table it is never new again, so recording it first is what makes a crash unable to lose it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared.core.clock import Clock, format_utc
from shared.core.errors import StorageError, UnexpectedResponseError, UpstreamError
from shared.defender.model import Incident, SlicePage, normalize
from shared.ports import Archive, IncidentSource, IncidentTable, Journal, Notify, QuarantineStore
from shared.storage.values import (
    TRANSACTION_SIZE,
    PlannedBlob,
    RowVersion,
    is_stored,
    placed,
    plan,
    quarantine_name,
    version_text,
)
from shared.usecases.ingest.tally import Scope, Tally

log = logging.getLogger("shared.usecases.ingest")  # one logger name for the whole use case

#: answers on new ground are stored together up to this many items (``TenantRun._store``):
#: one journal note for them all, then one create-only transaction of up to
#: ``TRANSACTION_SIZE`` rows and its blobs after another. Each storage call costs 1-1.5 ms of
#: CPU in the storage SDKs whatever its size, and legacy answers (slices planned below a page,
#: about 63 items) would otherwise not fill a transaction, nor two share one
GROUP_SIZE = 4 * TRANSACTION_SIZE

#: a last-update time later than now plus this is clamped to it (and logged): Defender's clocks
#: and ours agree far better than this, so a later time is a bad record, not skew
CLOCK_SKEW = timedelta(minutes=5)


class VersionStore:
    """Stores answers' versions in the archive and the table (see the module docstring).

    Args:
        archive, table, journal, quarantine: the storage ports (``quarantine`` None: records
            set aside are only counted and logged).
        notify: told ``(tenant, versions, created ids)`` of each answer before its versions
            are stored; it must be quick and must not talk to subscribers.
        clock: now, tz-aware UTC.
    """

    def __init__(
        self,
        *,
        archive: Archive,
        table: IncidentTable,
        journal: Journal,
        quarantine: QuarantineStore | None,
        notify: Notify | None,
        clock: Clock,
    ) -> None:
        self._archive = archive
        self._table = table
        self._journal = journal
        self._quarantine = quarantine
        self._notify = notify
        self._clock = clock

    def take(self, scope: Scope, page: SlicePage, run: Tally) -> None:
        """Store the versions of one answer that are not stored yet (quarantine the rest)."""
        tenant, client, lock = scope.tenant, scope.source, scope.lease
        run.listed += len(page.items)
        now = self._clock()
        incidents: list[Incident] = []
        for raw in page.items:
            try:
                incident = normalize(raw, client.api)
                if not incident.id:
                    raise UnexpectedResponseError("incident with an empty id")
            except UpstreamError as exc:
                self._set_aside(scope, raw, str(exc), run)
                continue
            if incident.last_update > now + CLOCK_SKEW:
                log.warning(
                    "tenant %s: incident %s has a last-update time %s in the future; using %s",
                    tenant,
                    incident.id,
                    format_utc(incident.last_update),
                    format_utc(now + CLOCK_SKEW),
                )
                run.clamped += 1
                incident = replace(incident, last_update=now + CLOCK_SKEW)
            incidents.append(incident)
        if not incidents:
            return
        newest: dict[str, Incident] = {}  # one version per id and write: the newest
        for incident in incidents:
            held = newest.get(incident.id)
            if held is None or held.last_update < incident.last_update:
                newest[incident.id] = incident
        alerts_apart = client.api == "graph" and not page.expanded
        # rows this run read or wrote lately need no read: a slice that overflowed is read
        # again at once by its sub-slices (every table write is conditional, so a row changed
        # since by another writer only makes its write refused and read again)
        known = {rid: run.recent[rid] for rid in newest if rid in run.recent}
        unknown = [i for i in newest.values() if i.id not in known]
        if unknown and run.create_first and not alerts_apart and len(unknown) <= GROUP_SIZE:
            created, rows = self._create_first(scope, unknown, run)
            known.update(rows)
            # rows exist around here (an overlap, updates): read before writing from now on
            run.create_first = created
        elif unknown:
            rows = self._table.lookup(tenant, (i.id for i in unknown))
            known.update(rows)
            # back to writing first once an answer meets no stored row (new ground again)
            run.create_first = not rows
        run.remember(known)
        fresh = [i for i in newest.values() if not is_stored(known.get(i.id), i)]
        if not fresh:
            return
        if alerts_apart:
            fresh = self._with_alerts(client, fresh)  # only for versions to store: API calls
        if self._notify is not None:
            # before anything is stored: a version in the table is never "fresh" again, so a
            # crash after storing it must not be able to lose its change (at least once)
            self._notify(tenant, fresh, frozenset(i.id for i in fresh if i.id not in known))
        lock.ensure()
        ingested_at = self._clock()
        planned = plan(tenant, fresh)
        self._journal.record(tenant, [b.name for b in planned])
        lock.ensure()
        stored = self._archive.upload(tenant, planned, ingested_at)
        run.blobs.update(s.blob_name for s in stored)
        lock.ensure()
        written = self._table.upsert_newer(tenant, stored, ingested_at, known)
        run.remember(known)  # with the ETags of what was just written
        run.stored += len(fresh)
        if written != len(fresh):
            log.info(
                "tenant %s: %d of %d versions were already in the table (another writer)",
                tenant,
                len(fresh) - written,
                len(fresh),
            )

    def _create_first(
        self, scope: Scope, versions: list[Incident], run: Tally
    ) -> tuple[bool, dict[str, RowVersion]]:
        """Store versions without reading the table first, when none of them has a row yet (a
        backfill, new ground): cut into transactions of up to ``TRANSACTION_SIZE``, each one's
        rows in one create-only transaction (atomic, refused if any row exists), then that
        transaction's own blobs, before the next. Returns (True, the rows written) when every
        transaction was stored; otherwise (False, the rows written by the transactions before
        the refused one and the table's rows of the rest, by point reads), for the usual path.

        Rows come before their blobs here, so the journal notes the rows too, once for all the
        transactions: should the run stop anywhere, the next run records the blobs that exist
        (their rows are there already) and deletes the rows whose blob is missing
        (``recover``), and lists those versions again (the checkpoint has not passed them).
        Blobs are planned per transaction, so a blob's rows are created all at once or not at
        all, and a transaction refused midway leaves every earlier one whole (rows and blobs).
        """
        tenant, lock = scope.tenant, scope.lease
        ordered = sorted(versions, key=lambda i: (i.last_update, i.id))  # a day per blob, mostly
        chunks = [
            plan(tenant, ordered[start : start + TRANSACTION_SIZE])
            for start in range(0, len(ordered), TRANSACTION_SIZE)
        ]
        lock.ensure()
        ingested_at = self._clock()
        self._journal.record(
            tenant,
            [b.name for planned in chunks for b in planned],
            created={b.name: [i.id for i in b.versions] for planned in chunks for b in planned},
        )
        written: dict[str, RowVersion] = {}
        for n, planned in enumerate(chunks):
            rows = placed(planned)
            if n:
                lock.ensure()  # the first was just checked, before the journal note
            known = self._table.create_new(tenant, rows, ingested_at)
            if known is None:
                rest = [i for later in chunks[n:] for b in later for i in b.versions]
                known = self._table.lookup(tenant, (i.id for i in rest))
                ours = all(_ours(known.get(v.incident.id), v.blob_name, v.incident) for v in rows)
                if not ours or all(self._archive.exists(b.name) for b in planned):
                    # the table holds some of these ids (nothing of this transaction was
                    # written), or the same versions, read again, were stored whole before
                    return False, {**known, **written}
                # every row is this write's own and a blob is missing: an earlier attempt of
                # the transaction went through and its answer was lost; the blobs are still to
                # write
                known = {v.incident.id: known[v.incident.id] for v in rows}
            chunk = [v.incident for v in rows]
            if self._notify is not None:
                # after the rows (only now is it known that every version is new to the store)
                # and before the blobs: a crash in between leaves rows without blobs, which the
                # next run's recovery deletes and lists again, so the change is heard at least
                # once
                try:
                    self._notify(tenant, chunk, frozenset(i.id for i in chunk))
                except Exception:
                    self._take_back(tenant, planned)
                    raise
            # no lease check between the rows and their blobs: rows once created are completed
            # by their blobs whatever happens to the lease (a run that took the tenant over
            # skips them as stored), while stopping here would leave rows without their versions
            self._archive.upload(tenant, planned, ingested_at)
            run.blobs.update(b.name for b in planned)
            run.stored += len(chunk)
            written.update(known)
        return True, written

    def _take_back(self, tenant: str, planned: list[PlannedBlob]) -> None:
        """Delete the rows a create-only transaction just wrote, when the push hook refused
        to hear of them: a failing hook stores nothing, as on the read-first path, and the
        versions stay new for the next run. Should this fail too, the journal's note has the
        next run delete them (``recover``), so the failure is logged, not raised over the
        hook's own."""
        try:
            for blob in planned:
                self._table.forget(tenant, blob.name, [i.id for i in blob.versions])
        except StorageError as exc:
            log.warning(
                "tenant %s: rows written before the push hook failed stay until the next run "
                "deletes them: %s",
                tenant,
                exc,
            )

    def _with_alerts(self, client: IncidentSource, incidents: list[Incident]) -> list[Incident]:
        """Graph without ``$expand``: attach each incident's alerts, read apart
        (docs/defender-service.md#large-expansions)."""
        alerts, _ = client.alerts_of_incidents([i.id for i in incidents])
        out: list[Incident] = []
        for incident in incidents:
            raw = {**incident.raw, "alerts": alerts.get(incident.id, [])}
            out.append(replace(incident, raw=raw, alert_count=len(raw["alerts"])))
        return out

    def _set_aside(self, scope: Scope, raw: Any, reason: str, run: Tally) -> None:
        """Set aside a record that cannot be stored (once per run), with why."""
        tenant, now = scope.tenant, self._clock()
        name = quarantine_name(tenant, raw, now.date().isoformat())
        if name in run.set_aside:
            return  # read again by a later slice of this run: set aside (and counted) once
        run.set_aside.add(name)
        run.quarantined += 1
        log.warning("tenant %s: a record was quarantined: %s", tenant, reason)
        if self._quarantine is not None:
            scope.lease.ensure()
            self._quarantine.put(tenant, scope.source.api, raw, reason, now)

    def finished(self, scope: Scope) -> None:
        """Forget the journal's note: every blob it named is in the table now."""
        scope.lease.ensure()
        self._journal.clear(scope.tenant)

    def recover(self, scope: Scope) -> int:
        """Record in the table the blobs of a page whose run stopped before recording them.

        Returns:
            how many versions were recovered into the table.
        """
        tenant, lock = scope.tenant, scope.lease
        note = self._journal.note(tenant)
        if not note.blobs:
            return 0
        recovered = forgotten = 0
        for name in note.blobs:
            stored = self._archive.read(name)
            if stored:
                lock.ensure()
                recovered += self._table.upsert_newer(tenant, stored, self._clock())
            elif name in note.created:
                # rows created before a blob that never got written: take them back, so the
                # listing (whose checkpoint has not passed them) stores those versions again
                lock.ensure()
                forgotten += self._table.forget(tenant, name, note.created[name])
        lock.ensure()
        self._journal.clear(tenant)
        log.warning(
            "tenant %s: an earlier run stopped mid-page; %d stored versions recorded now, %d rows "
            "without their blob deleted (their versions are read again)",
            tenant,
            recovered,
            forgotten,
        )
        return recovered


def _ours(row: RowVersion | None, blob_name: str, incident: Incident) -> bool:
    """Whether a row is exactly the one a create-first write of ``incident`` would make."""
    return row is not None and row.blob == blob_name and row.version == version_text(incident)
