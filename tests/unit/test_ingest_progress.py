"""The terminal progress line of ``ingest``: bar, incidents, slices, rate and time left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.cli.ingest import progress_line
from shared.usecases.ingest import IngestProgress

START = datetime(2026, 11, 1, tzinfo=UTC)


def test_progress_line_shows_bar_counts_rate_and_time_left() -> None:
    p = IngestProgress(
        tenant="2b0b152f-a744-47d5-848a-5eb6f74e4b11",
        slices=12,
        stored=600,
        listed=640,
        start=START,
        cursor=START + timedelta(days=10),
        end=START + timedelta(days=40),
        elapsed=30.0,
    )
    line = progress_line(p)
    assert p.fraction == 0.25 and p.seconds_left == 90.0
    assert "[######" in line and " 25%" in line
    assert "600 incidents, 12 slices, 20/s, 00:01:30 left" in line


def test_progress_before_any_progress_has_no_estimate() -> None:
    p = IngestProgress("t", 0, 0, 0, START, START, START + timedelta(days=1), 0.0)
    assert p.seconds_left is None and "? left" in progress_line(p)
