"""The ingestion use case: each tenant's incidents, read by time slices, stored exactly once.

Per tenant, under its lease, oldest first:

1. Recover: blobs an earlier run wrote but did not record in the table (write-ahead journal)
   are recorded first, so they are known before anything is listed.
2. Plan: the listing covers ``[checkpoint - overlap, now - safety lag)`` (first run: the
   lookback; ``--since``: a backfill) and is cut into slices by ``shared.defender.slices``. The
   overlap is not re-read where the run that committed the checkpoint read it lag + overlap
   after its time (a backlog: ``shared.usecases.ingest.window.plan_start``).
3. For each answer: records without an id or last-update time go to quarantine (counted,
   never blocking); future last-update times are clamped to now + ``CLOCK_SKEW`` (logged) so one
   bad clock cannot make a row unbeatable; once an answer of the run met no stored row, the
   next answers are stored create-first (their rows in one atomic create-only transaction,
   then their blobs, the rows noted in the journal: ``versions.VersionStore``); otherwise the
   ids are looked up by point reads (rows the run read or wrote lately are known without a
   read); versions not stored yet are noted in the journal, written to blobs, then recorded in
   the table in batched conditional transactions. The cost per answer does not grow with the
   table (``shared.storage.table``).
4. When the answer completed a slice, the checkpoint moves to the slice's end (ETag-guarded,
   never backwards) and the density seen is kept for the next run. ``notify`` (push) hears of
   an answer's new versions before they are stored (step 3; create-first: right after their
   rows are created, before their blobs, see ``versions.VersionStore``): once a version is in the
   table it is never new again, so recording it first is what makes a crash unable to lose it.
5. The run stops starting slices before its time budget, or when the API quota is spent for
   longer than a call may wait (``stopped="quota"``, a success), and says how far it got; the
   next run resumes at the checkpoint, so a backlog of any size finishes over successive runs
   and no slice is read twice except the overlap of runs that keep up.

Why nothing is lost (resting only on documented behaviour, see ``shared.defender.slices`` and
``docs/listing.md``): a slice is complete only when one answer for exactly it had no nextLink
and fewer than ``$top`` items (or as many as its ``@odata.count``), so it held every incident
then updated in it; on Graph, a slice older than the late-arrival bound may instead be read
across its pages and is complete when its first page's ``@odata.count`` is matched by as many
distinct incidents read (``PagedRead``: nothing can enter such a slice, so those are all of
them), whichever pages carry the count; slices complete oldest first and the checkpoint never
passes the end of the last complete one, which is at most now minus the safety lag. An update
made visible late (Defender can show an update after the time it records) is read if it became
visible within the safety lag of its time; in steady state (runs keeping up) also if within
lag + overlap, because every run re-reads the overlap before its checkpoint.

Why nothing is stored twice: a version (id, exact last-update text) is written only when the
table holds neither it nor a newer one; blobs are named by the digest of their versions, so a
retry rewrites the same blob; a crash between blobs and table is repaired by the journal before
the next listing; one writer per tenant is enforced by a lease kept alive by a timer and checked
before every write, and a run that loses it stops at once with an error (``lease_lost``).

Faults stay in their tenant: anything raised in one tenant's run, typed or not, becomes that
tenant's failed result with a code; the others go on.

User runs: ``ingest --as-user`` is refused by the CLI (``shared.cli.ingest``): a user's view is
trimmed by Defender RBAC, so it must not move the app's checkpoint, and keeping a checkpoint
per user would store a partial lake; ``incidents list --as-user`` is the way to see a user's view.


Modules: ``ingestor`` (the entry point: one ``TenantRun`` per tenant, failures kept to their
tenant), ``run`` (one tenant's run: plan, read, commit), ``versions`` (storing an answer's
versions once, recovery through the journal), ``checkpoint`` (the typed checkpoint document),
``budget`` (the time budget), ``writer`` (the writer thread), ``window`` (where a listing
starts), ``results`` (what a run returns), ``tally`` (a run's counters).
"""

from shared.ports import Notify
from shared.usecases.ingest.budget import Budget
from shared.usecases.ingest.checkpoint import CHECKPOINT_READ_AT, Checkpoint
from shared.usecases.ingest.ingestor import Ingestor, IngestStores
from shared.usecases.ingest.results import (
    IngestProgress,
    IngestSummary,
    Progress,
    TenantHealth,
    TenantResult,
    ingestion_health,
)
from shared.usecases.ingest.run import (
    EXPAND_RETRY_AFTER,
    GRAPH_INCIDENT_TOP,
    RunOptions,
    TenantRun,
)
from shared.usecases.ingest.tally import RECENT_ROWS
from shared.usecases.ingest.versions import CLOCK_SKEW, VersionStore
from shared.usecases.ingest.writer import Writer

__all__ = [
    "CHECKPOINT_READ_AT",
    "CLOCK_SKEW",
    "EXPAND_RETRY_AFTER",
    "GRAPH_INCIDENT_TOP",
    "RECENT_ROWS",
    "Budget",
    "Checkpoint",
    "IngestProgress",
    "IngestStores",
    "IngestSummary",
    "Ingestor",
    "Notify",
    "Progress",
    "RunOptions",
    "TenantHealth",
    "TenantResult",
    "TenantRun",
    "VersionStore",
    "Writer",
    "ingestion_health",
]
