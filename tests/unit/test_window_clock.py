"""Window planning and UTC time handling (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.clock import format_utc, parse_utc
from shared.usecases.ingest.window import plan_start

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KW = {"lookback": timedelta(days=30), "overlap": timedelta(minutes=10)}


def test_first_run_starts_lookback_ago() -> None:
    """No watermark: read the configured lookback."""
    assert plan_start(None, NOW, **KW) == NOW - timedelta(days=30)


def test_later_runs_reread_the_overlap() -> None:
    """With a watermark, start an overlap before it."""
    mark = NOW - timedelta(hours=1)
    assert plan_start(mark, NOW, **KW) == mark - timedelta(minutes=10)


def test_a_backlog_checkpoint_resumes_without_the_overlap() -> None:
    """A checkpoint far behind the run that committed it: every version before it was read
    long after its time, so the overlap holds nothing a late update could have added."""
    mark = NOW - timedelta(days=3)
    assert plan_start(mark, NOW, settled=NOW - timedelta(hours=1), **KW) == mark


def test_the_overlap_is_reread_where_it_was_not_settled() -> None:
    """A run that kept up (checkpoint at its upper bound) re-reads the whole overlap, and one
    in between re-reads only what had not waited lag + overlap when it was read."""
    mark = NOW - timedelta(hours=1)
    overlap = timedelta(minutes=10)
    assert plan_start(mark, NOW, settled=mark - overlap, **KW) == mark - overlap
    assert plan_start(mark, NOW, settled=mark - timedelta(hours=2), **KW) == mark - overlap
    partly = mark - timedelta(minutes=4)
    assert plan_start(mark, NOW, settled=partly, **KW) == partly
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_start(mark, NOW, settled=partly.replace(tzinfo=None), **KW)


def test_watermark_in_the_future_is_clamped_to_now() -> None:
    """A watermark ahead of the local clock never makes a start in the future."""
    assert plan_start(NOW + timedelta(hours=2), NOW, **KW) == NOW


def test_backfill_since_wins_and_rejects_future() -> None:
    """--since overrides the watermark; a future since is an error."""
    since = NOW - timedelta(days=3)
    assert plan_start(NOW, NOW, since=since, **KW) == since
    with pytest.raises(ValueError, match="future"):
        plan_start(None, NOW, since=NOW + timedelta(seconds=1), **KW)


def test_naive_datetimes_are_refused() -> None:
    """Naive times are bugs, not inputs."""
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_start(None, NOW.replace(tzinfo=None), **KW)


def test_parse_utc_handles_seven_digit_fractions_and_offsets() -> None:
    """Defender's .NET timestamps (7 digits) and offsets parse to aware UTC."""
    assert parse_utc("2020-09-06T14:46:57.0733333Z") == datetime(
        2020, 9, 6, 14, 46, 57, 73333, tzinfo=UTC
    )
    assert parse_utc("2020-09-06T16:46:57+02:00") == datetime(2020, 9, 6, 14, 46, 57, tzinfo=UTC)
    with pytest.raises(ValueError, match="no time zone"):
        parse_utc("2020-09-06T14:46:57")


def test_format_utc_uses_z_and_refuses_naive() -> None:
    """OData datetime literals end in Z."""
    assert format_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert format_utc(datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=UTC)).endswith(".000120Z")
    with pytest.raises(ValueError, match="timezone-aware"):
        format_utc(datetime(2026, 1, 2))  # noqa: DTZ001 - the point of the test


_VALID = "2026-12-05T21:33:04.1234567Z"


def _both(text: str) -> tuple[str, object]:
    from shared.core.clock import _parse_general

    try:
        return "ok", _parse_general(text)
    except ValueError:
        return "refused", None


@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_VALID) - 1),
            st.sampled_from(list("0123456789-:T.Z +z\u0663\x00 a\t")),
        ),
        max_size=3,
    )
)
@settings(max_examples=3000, derandomize=True)
def test_the_ticks_shape_parses_as_the_general_path_does(edits: list[tuple[int, str]]) -> None:
    text = list(_VALID)
    for at, char in edits:
        text[at] = char
    candidate = "".join(text)
    try:
        fast: tuple[str, object] = ("ok", parse_utc(candidate))
    except ValueError:
        fast = ("refused", None)
    assert fast == _both(candidate), repr(candidate)
    if fast[0] == "ok":
        assert fast[1].tzinfo is UTC  # type: ignore[attr-defined]


def test_the_ticks_shape_drops_the_seventh_digit_and_is_utc() -> None:
    value = parse_utc("2026-12-05T21:33:04.1234569Z")
    assert value == datetime(2026, 12, 5, 21, 33, 4, 123456, tzinfo=UTC)
    assert value.tzinfo is UTC
