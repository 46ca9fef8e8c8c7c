"""Ingestion state per tenant: the watermark (ETag-guarded) and a lease-based tenant lock.

Both live in the ``defender-state`` container of the data account:
``watermarks/<tenant>.json`` and ``locks/<tenant>``. The lock is a 60-second blob lease renewed
between pages; a run that crashes releases it by expiry, so no tenant stays locked for long.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
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

from shared.clock import format_utc, parse_utc
from shared.errors import ConflictError, StorageError

LEASE_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Watermark:
    """A tenant's watermark and the ETag it was read with (None: never saved)."""

    value: datetime | None
    etag: str | None


class WatermarkStore:
    """Loads and saves per-tenant watermarks with optimistic concurrency."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _blob(self, tenant: str) -> Any:
        return self._container.get_blob_client(f"watermarks/{tenant}.json")

    def load(self, tenant: str) -> Watermark:
        """The tenant's watermark (value None on the first run).

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
            value = parse_utc(json.loads(raw)["watermark"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"the watermark of tenant {tenant} is corrupt; delete "
                f"defender-state/watermarks/{tenant}.json to restart from the lookback"
            ) from exc
        return Watermark(value, etag)

    def save(self, tenant: str, value: datetime, *, etag: str | None, saved_at: datetime) -> None:
        """Save only if nobody changed it since ``etag`` was read (create-only when None).

        Raises:
            ConflictError: another run saved first.
            StorageError: the write failed.
        """
        body = json.dumps({"watermark": format_utc(value), "savedAt": format_utc(saved_at)})
        try:
            if etag is None:
                self._blob(tenant).upload_blob(body, overwrite=False)
            else:
                self._blob(tenant).upload_blob(
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


class TenantLock:
    """A blob lease that keeps two runs from ingesting the same tenant at once."""

    def __init__(self, container: ContainerClient, tenant: str) -> None:
        self.tenant = tenant
        self._blob = container.get_blob_client(f"locks/{tenant}")
        self._lease: BlobLeaseClient | None = None

    def __enter__(self) -> TenantLock:
        try:
            try:
                self._blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                pass  # the lock blob exists; its lease is what matters
            except HttpResponseError as exc:
                if exc.status_code != 412:  # a leased blob refuses writes: someone holds it
                    raise
            self._lease = self._blob.acquire_lease(lease_duration=LEASE_SECONDS)
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
        return self

    def renew(self) -> None:
        """Extend the lease; call between pages.

        Raises:
            ConflictError: the lease was lost (expired and taken): stop without saving state.
        """
        if self._lease is None:
            return
        try:
            self._lease.renew()
        except AzureError as exc:
            raise ConflictError(f"lost the lock of tenant {self.tenant}") from exc

    def __exit__(self, *exc: object) -> None:
        if self._lease is None:
            return
        with contextlib.suppress(AzureError):  # it expires on its own within LEASE_SECONDS
            self._lease.release()
        self._lease = None


class PageJournal:
    """Write-ahead note of the blobs a page is about to write, per tenant.

    A crash between writing a page's blobs and recording them in the table would leave versions
    in the lake that the table does not know; the next run would list them again (perhaps
    grouped differently, so under another blob name) and store them twice. The journal names
    those blobs before they are written; the next run first records whatever of them exists in
    the table, so the version check then drops them. ``journal/<tenant>.json``.
    """

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _blob(self, tenant: str) -> Any:
        return self._container.get_blob_client(f"journal/{tenant}.json")

    def record(self, tenant: str, blob_names: list[str]) -> None:
        """Note the blobs about to be written (replacing the previous page's note).

        Raises:
            StorageError: the note could not be written (then nothing else is).
        """
        body = json.dumps({"blobs": blob_names})
        try:
            self._blob(tenant).upload_blob(body, overwrite=True)
        except AzureError as exc:
            raise StorageError(
                f"could not write the journal of {tenant}: {type(exc).__name__}"
            ) from exc

    def pending(self, tenant: str) -> list[str]:
        """Blobs noted by a run that did not finish (empty when the last run finished).

        Raises:
            StorageError: the note could not be read or is corrupt.
        """
        try:
            raw = self._blob(tenant).download_blob().readall()
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageError(
                f"could not read the journal of {tenant}: {type(exc).__name__}"
            ) from exc
        try:
            names = json.loads(raw)["blobs"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"the journal of tenant {tenant} is corrupt") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StorageError(f"the journal of tenant {tenant} is corrupt")
        return names

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
