"""The typed checkpoint: parsed from what the store loaded, written back unchanged, tolerant
of malformed fields, keeping fields it does not know."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shared.storage.values import Watermark
from shared.usecases.ingest.checkpoint import Checkpoint

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DOC = {
    "ratePerHour": 12.5,
    "checkpointReadAt": "2026-12-01T11:59:00Z",
    "expandFailedAt": "2026-11-30T08:00:00Z",
    "secondsPerPage": 1.234,
    "lastSuccess": "2026-12-01T12:01:00Z",
    "lastRun": {"at": "2026-12-01T12:01:00Z", "complete": True, "incidents": 3},
    "savedAt": "2026-12-01T12:01:00Z",
    "plannerHint": {"from": "a newer version"},
}


def test_every_field_is_read_typed() -> None:
    cp = Checkpoint.parse(Watermark(T0, '"etag"', DOC))
    assert cp.value == T0 and cp.etag == '"etag"'
    assert cp.rate_per_hour == 12.5 and cp.seconds_per_page == 1.234
    assert cp.read_at == datetime(2026, 12, 1, 11, 59, tzinfo=UTC)
    assert cp.expand_failed_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert cp.last_success == datetime(2026, 12, 1, 12, 1, tzinfo=UTC)
    assert cp.last_run == DOC["lastRun"]
    assert cp.extra == {"plannerHint": {"from": "a newer version"}}


def test_written_back_it_is_the_same_document_but_what_the_store_adds() -> None:
    cp = Checkpoint.parse(Watermark(T0, None, DOC))
    assert cp.info() == {k: v for k, v in DOC.items() if k != "savedAt"}
    again = Checkpoint.parse(Watermark(T0, None, cp.info()))
    assert again == cp


def test_malformed_fields_read_as_unknown() -> None:
    broken = {
        "ratePerHour": "fast",
        "checkpointReadAt": "yesterday",
        "expandFailedAt": 17,
        "secondsPerPage": -3,
        "lastRun": "done",
    }
    cp = Checkpoint.parse(Watermark(T0, None, broken))
    assert cp.rate_per_hour is None and cp.read_at is None and cp.expand_failed_at is None
    assert cp.seconds_per_page == 0.0 and cp.last_run is None
    assert cp.extra == {}


def test_a_first_run_has_nothing_and_writes_only_the_pace() -> None:
    cp = Checkpoint.parse(Watermark(None, None))
    assert cp == Checkpoint(None)
    assert cp.info() == {"secondsPerPage": 0.0}
    later = replace(cp, rate_per_hour=4.0, read_at=T0, seconds_per_page=0.4567)
    assert later.info() == {
        "ratePerHour": 4.0,
        "checkpointReadAt": "2026-12-01T12:00:00Z",
        "secondsPerPage": 0.457,
    }
