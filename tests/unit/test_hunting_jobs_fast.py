"""The hunting job worker (``run_queued_job``, ``execute_job``) on a backend of in-memory fakes:
a job is saved "running" before its hunt, finished with its answer or its error, and a
redelivered message of a finished job (the queue delivers at least once) hunts nothing again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.api.handlers import run_queued_job
from shared.core.errors import HuntingQuotaError
from shared.defender.model import HuntingResult
from shared.storage.values import Job
from testkit.api_backend import memory_backend
from testkit.fakes import MovableClock
from testkit.port_fakes import MemoryDefender, MemoryJobs

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TENANT = "44444444-4444-4444-4444-444444444444"


class Rig:
    def __init__(self, hunting: Callable[[str, str | None], HuntingResult] | None = None) -> None:
        self.clock = MovableClock(T0)
        self.jobs = MemoryJobs()
        self.states_seen: list[str] = []

        def hunt(query: str, timespan: str | None) -> HuntingResult:
            # what a poll would read while the hunt runs
            job = self.jobs.load(self.job.id)
            self.states_seen.append(job.state if job else "missing")
            self.clock.advance(timedelta(seconds=3))
            if hunting is not None:
                return hunting(query, timespan)
            rows = ({"DeviceName": "=cmd|' /C calc'!A0", "Count": 3},)
            return HuntingResult(("DeviceName", "Count"), ("string", "long"), rows, "graph")

        self.defender = MemoryDefender(TENANT, hunting=hunt)
        self.backend = memory_backend(
            clock=self.clock, jobs=self.jobs, client_for=lambda tenant: self.defender
        )
        self.job = self.new()

    def new(self, **changes: Any) -> Job:
        job = Job.new(
            tenant=TENANT,
            query="DeviceEvents | summarize Count=count() by DeviceName",
            timespan=None,
            fmt=changes.pop("fmt", "json"),
            max_rows=None,
            context=changes.pop("context", "app"),
            now=self.clock(),
        )
        self.jobs.save(job)
        self.job = job
        return job

    def stored(self) -> Job:
        job = self.jobs.load(self.job.id)
        assert job is not None
        return job


def test_a_queued_job_runs_once_and_keeps_its_answer() -> None:
    rig = Rig()
    run_queued_job(rig.backend, rig.job.id)
    assert rig.states_seen == ["running"]  # saved before the hunt started
    done = rig.stored()
    assert (done.state, done.status) == ("done", 200)
    assert done.result["rows"][0]["Count"] == 3 and done.result["truncated"] is False
    assert done.updated == "2026-12-01T12:00:03Z"
    run_queued_job(rig.backend, rig.job.id)  # the queue delivered the message again
    assert rig.defender.calls == ["hunt"] and rig.stored() == done


def test_a_csv_job_neutralises_formula_cells() -> None:
    rig = Rig()
    rig.new(fmt="csv")
    run_queued_job(rig.backend, rig.job.id)
    csv = rig.stored().result["csv"]
    assert csv.splitlines()[1] == "'=cmd|' /C calc'!A0,3"


def test_a_failed_hunt_is_recorded_as_the_jobs_answer() -> None:
    def spent(query: str, timespan: str | None) -> HuntingResult:
        raise HuntingQuotaError("the tenant's hunting quota is spent", retry_after=600)

    rig = Rig(spent)
    run_queued_job(rig.backend, rig.job.id)
    failed = rig.stored()
    assert failed.state == "failed" and failed.status == 429
    assert failed.result["error"]["code"] and "quota" in failed.result["error"]["message"]


def test_the_queue_worker_leaves_user_jobs_and_unknown_ids_alone() -> None:
    rig = Rig()
    user_job = rig.new(context="user")  # runs only where the caller's token is
    run_queued_job(rig.backend, user_job.id)
    run_queued_job(rig.backend, "0" * 32)
    assert rig.defender.calls == [] and rig.stored().state == "queued"
