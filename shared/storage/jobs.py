"""Asynchronous hunting jobs: their record, where they are kept, and how one runs.

A job is one JSON blob ``jobs/<id>.json`` in the ``defender-hunting-jobs`` container of the
data account. Its id is 128 random bits; its tenant is checked on every poll like any other
request's. States: ``queued`` → ``running`` → ``done`` | ``failed``. The record holds the
rendered query (never a caller token: jobs in the user context run only in the process that
received the caller's token) and, when finished, the HTTP status and body of the answer.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from shared.core.errors import StorageError
from shared.storage.containers import create_container_if_not_exists
from shared.storage.values import Job, valid_job_id

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient


class JobStore:
    """Jobs as blobs."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ready = False

    def save(self, job: Job) -> None:
        """Write the job (last writer wins: one job has one runner at a time).

        Raises:
            StorageError: the blob could not be written.
        """
        from azure.core.exceptions import AzureError

        body = json.dumps(asdict(job), default=str).encode("utf-8")
        try:
            if not self._ready:
                create_container_if_not_exists(self._container)
                self._ready = True
            self._container.upload_blob(f"jobs/{job.id}.json", body, overwrite=True)
        except AzureError as exc:
            raise StorageError(f"could not save hunting job ({type(exc).__name__})") from exc

    def load(self, job_id: str) -> Job | None:
        """The job, or None if there is none with this id.

        Raises:
            StorageError: the blob could not be read or is corrupt.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        if not valid_job_id(job_id):
            return None
        try:
            raw = self._container.download_blob(f"jobs/{job_id}.json").readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read hunting job ({type(exc).__name__})") from exc
        try:
            return Job(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise StorageError("a hunting job record is corrupt") from exc
