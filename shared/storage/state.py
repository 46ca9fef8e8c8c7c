"""Ingestion state per tenant: the checkpoint (ETag-guarded) and a lease-based tenant lock.

Both live in the ``defender-state`` container of the data account:
``watermarks/<tenant>.json`` (the checkpoint: the end of the last fully committed slice, the
density seen, the last success) and ``locks/<tenant>``. The lock is a blob lease (15-60 s) kept
alive by a background timer renewing it every quarter of its duration, and renewed again before
every write (``ensure``); a run whose renewal fails has lost the tenant and must stop writing.
A run that crashes releases it by expiry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.core.clock import format_utc, parse_utc
from shared.core.errors import ConflictError, LeaseLostError, StorageError
from shared.core.invocation import start_thread
from shared.storage.values import JournalNote, Watermark

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
#: ``TenantLock.ensure`` renews unless a renewal began less than this many seconds ago
ENSURE_FRESH = 1.0


class WatermarkStore:
    """Loads and saves per-tenant checkpoints with optimistic concurrency."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _blob(self, tenant: str) -> Any:
        return self._container.get_blob_client(f"watermarks/{tenant}.json")

    def load(self, tenant: str) -> Watermark:
        """The tenant's checkpoint (value None on the first run).

        Raises:
            StorageError: the state could not be read or is corrupt.
        """
        try:
            downloader = self._blob(tenant).download_blob()
            raw = downloader.readall()
            etag = downloader.properties.etag
        except ResourceNotFoundError:
            return Watermark(None, None)
        except AzureError as exc:
            raise StorageError(
                f"could not read the watermark of {tenant}: {type(exc).__name__}"
            ) from exc
        try:
            doc = json.loads(raw)
            value = parse_utc(doc["watermark"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"the watermark of tenant {tenant} is corrupt; delete "
                f"defender-state/watermarks/{tenant}.json to restart from the lookback"
            ) from exc
        info = {k: v for k, v in doc.items() if k != "watermark"} if isinstance(doc, dict) else {}
        return Watermark(value, etag, info)

    def list_tenants(self) -> list[str]:
        """Tenants that have a checkpoint.

        Raises:
            StorageError: the container could not be listed.
        """
        try:
            names = [b.name for b in self._container.list_blobs(name_starts_with="watermarks/")]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageError(f"could not list the checkpoints: {type(exc).__name__}") from exc
        return sorted(n[len("watermarks/") : -len(".json")] for n in names if n.endswith(".json"))

    def save(
        self,
        tenant: str,
        value: datetime,
        *,
        etag: str | None,
        saved_at: datetime,
        info: Mapping[str, Any] | None = None,
    ) -> str:
        """Save only if nobody changed it since ``etag`` was read (create-only when None).

        Returns:
            the new ETag (for the next save of the same run).

        Raises:
            ConflictError: another run saved first.
            StorageError: the write failed.
        """
        doc = {**(info or {}), "watermark": format_utc(value), "savedAt": format_utc(saved_at)}
        body = json.dumps(doc, sort_keys=True)
        try:
            if etag is None:
                result = self._blob(tenant).upload_blob(body, overwrite=False)
            else:
                result = self._blob(tenant).upload_blob(
                    body, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise ConflictError(
                f"the watermark of tenant {tenant} was changed by another run"
            ) from exc
        except AzureError as exc:
            raise StorageError(
                f"could not save the watermark of {tenant}: {type(exc).__name__}"
            ) from exc
        return str(result.get("etag") or "") if isinstance(result, dict) else ""


class TenantLock:
    """A blob lease that keeps two runs from ingesting the same tenant at once.

    While held, a daemon timer renews it every ``lease_seconds / 4`` (so API waits of any length
    never let it lapse); ``ensure`` (called before every write) renews it too, and raises
    ``LeaseLostError`` once a renewal has failed: another run may own the tenant now.
    """

    def __init__(
        self,
        container: ContainerClient,
        tenant: str,
        *,
        lease_seconds: int = LEASE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 15 <= lease_seconds <= 60:  # the service's range for a finite lease
            raise ValueError("lease_seconds must be from 15 to 60")
        self.tenant = tenant
        self._blob = container.get_blob_client(f"locks/{tenant}")
        self._lease: BlobLeaseClient | None = None
        self._seconds = lease_seconds
        self._monotonic = monotonic
        self._renewed_at = 0.0
        self._lost: str | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """Whether a renewal failed (the lease may belong to another run now)."""
        return self._lost is not None

    def __enter__(self) -> TenantLock:
        try:
            try:
                self._blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                pass  # the lock blob exists; its lease is what matters
            except HttpResponseError as exc:
                if exc.status_code != 412:  # a leased blob refuses writes: someone holds it
                    raise
            self._lease = self._blob.acquire_lease(lease_duration=self._seconds)
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise ConflictError(
                    f"tenant {self.tenant} is being ingested by another run"
                ) from exc
            raise StorageError(
                f"could not lock tenant {self.tenant}: {type(exc).__name__}"
            ) from exc
        except AzureError as exc:
            raise StorageError(
                f"could not lock tenant {self.tenant}: {type(exc).__name__}"
            ) from exc
        self._renewed_at = self._monotonic()
        self._stop.clear()
        # a lost lease is logged from this thread: with the run's invocation id (carried)
        self._timer = start_thread(self._keep_alive, name=f"lease-{self.tenant}")
        return self

    def _keep_alive(self) -> None:
        while not self._stop.wait(self._seconds / 4):
            try:
                self.renew()
            except LeaseLostError:
                return

    def renew(self) -> None:
        """Extend the lease now.

        Raises:
            LeaseLostError: the lease was lost (expired and taken, or broken): stop writing.
        """
        with self._guard:
            if self._lost is not None:
                raise LeaseLostError(self._lost)
            if self._lease is None:
                return
            began = self._monotonic()
            try:
                self._lease.renew()
            except AzureError as exc:
                self._lost = (
                    f"lost the lease of tenant {self.tenant} ({type(exc).__name__}); another run "
                    "may be ingesting it, so this run stopped writing"
                )
                log.error("%s", self._lost)
                raise LeaseLostError(self._lost) from exc
            # the service counts the lease from when it got the renewal, after we sent it
            self._renewed_at = began

    def ensure(self) -> None:
        """Before a write: renew now unless a renewal began less than ``ENSURE_FRESH``
        seconds ago, so the write starts with the lease ours for all but a second of its
        duration (it closes the window in which a lapsed lease taken by another run would go
        unnoticed). The few writes of one answer share one renewal instead of one each: a
        renewal is a storage call, and it was a tenth of a run's CPU.

        Raises:
            LeaseLostError: the lease was lost.
        """
        with self._guard:
            if self._lost is not None:
                raise LeaseLostError(self._lost)
            fresh = self._monotonic() - self._renewed_at < ENSURE_FRESH
        if not fresh:
            self.renew()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
            self._timer = None
        if self._lease is None:
            return
        if self._lost is None:
            with contextlib.suppress(AzureError):  # it expires on its own within the lease
                self._lease.release()
        self._lease = None


class PageJournal:
    """Write-ahead note of the blobs a page is about to write, per tenant.

    A crash between writing a page's blobs and recording them in the table would leave versions
    in the lake that the table does not know; the next run would list them again (perhaps
    grouped differently, so under another blob name) and store them twice. The journal names
    those blobs before they are written; the next run first records whatever of them exists in
    the table, so the version check then drops them. An answer whose rows are created before
    its blobs (``shared.storage.table.IncidentTable.create_new``) also notes their ids, so the
    next run deletes rows whose blob never got written and reads those versions again.
    ``journal/<tenant>.json``.
    """

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _blob(self, tenant: str) -> Any:
        return self._container.get_blob_client(f"journal/{tenant}.json")

    def record(
        self,
        tenant: str,
        blob_names: list[str],
        created: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Note the blobs about to be written (replacing the previous page's note), and the
        rows about to be created before them (``created``: blob name -> incident ids).

        Raises:
            StorageError: the note could not be written (then nothing else is).
        """
        doc: dict[str, Any] = {"blobs": blob_names}
        if created:
            doc["created"] = {name: list(ids) for name, ids in created.items()}
        try:
            self._blob(tenant).upload_blob(json.dumps(doc), overwrite=True)
        except AzureError as exc:
            raise StorageError(
                f"could not write the journal of {tenant}: {type(exc).__name__}"
            ) from exc

    def note(self, tenant: str) -> JournalNote:
        """The note of a run that did not finish (empty when the last run finished).

        Raises:
            StorageError: the note could not be read or is corrupt.
        """
        try:
            raw = self._blob(tenant).download_blob().readall()
        except ResourceNotFoundError:
            return JournalNote()
        except AzureError as exc:
            raise StorageError(
                f"could not read the journal of {tenant}: {type(exc).__name__}"
            ) from exc
        corrupt = StorageError(f"the journal of tenant {tenant} is corrupt")
        try:
            doc = json.loads(raw)
            names = doc["blobs"]
            created = doc.get("created", {})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise corrupt from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise corrupt
        if not isinstance(created, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            for ids in created.values()
        ):
            raise corrupt
        return JournalNote(tuple(names), {str(name): tuple(ids) for name, ids in created.items()})

    def clear(self, tenant: str) -> None:
        """Forget the note (the run finished: every noted blob is in the table)."""
        try:
            self._blob(tenant).delete_blob()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageError(
                f"could not clear the journal of {tenant}: {type(exc).__name__}"
            ) from exc


def leased_tenants(container: ContainerClient, tenant: str = "") -> set[str]:
    """Tenants whose ingestion lock blob (``locks/<tenant>``, ``TenantLock``) is leased: running
    now (only ``tenant``'s lock is listed when one is named)."""
    try:
        return {
            b.name.removeprefix("locks/")
            for b in container.list_blobs(name_starts_with=f"locks/{tenant}")
            if getattr(b.lease, "state", None) == "leased"
            and (not tenant or b.name == f"locks/{tenant}")
        }
    except ResourceNotFoundError:
        return set()
    except AzureError as exc:
        raise StorageError(f"could not list tenant locks ({type(exc).__name__})") from exc
