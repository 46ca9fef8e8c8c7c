"""Asynchronous hunting jobs: their record, where they are kept, and how one runs.

A job is one JSON blob ``jobs/<id>.json`` in the ``defender-hunting-jobs`` container of the
data account. Its id is 128 random bits; its tenant is checked on every poll like any other
request's. States: ``queued`` → ``running`` → ``done`` | ``failed``. The record holds the
rendered query (never a caller token: jobs in the user context run only in the process that
received the caller's token) and, when finished, the HTTP status and body of the answer.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from shared.core.clock import format_utc, parse_utc
from shared.core.errors import StorageError
from shared.storage import create_container_if_not_exists

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

JOB_CONTAINER = "defender-hunting-jobs"
JobState = Literal["queued", "running", "done", "failed"]
FINISHED = ("done", "failed")


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
