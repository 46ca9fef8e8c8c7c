"""The injected clock: every "now" in shared/ comes from one of these, always tz-aware UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


def format_utc(value: datetime) -> str:
    """Render an aware datetime as ISO-8601 UTC with a ``Z`` (the form OData filters take).

    Raises:
        ValueError: ``value`` is naive (a naive time is a bug, not an input).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """Parse an API timestamp (ISO-8601, up to 7 fractional digits, ``Z`` or offset) to aware UTC.

    Defender returns 7 fractional digits (.NET ticks); Python keeps 6, so the 7th is dropped.

    Raises:
        ValueError: the text is not such a timestamp, or has no zone.
    """
    # the services' own shape, ``2026-12-05T21:33:04.1234567Z`` (three or more per incident
    # stored): the standard library parses it at a tenth of the general path's cost, with
    # the same result (tests/unit/test_window_clock.py compares both)
    if (
        len(text) == _TICKS_SHAPE
        and text[19] == "."
        and text[27] == "Z"
        and text[20:27].isdigit()
        and text[20:27].isascii()
        and "." not in text[:19]
        and not text[0].isspace()
    ):
        # exactly what the general path hands ``fromisoformat`` for this shape
        return datetime.fromisoformat(text[:26] + "+00:00")
    return _parse_general(text)


#: ``YYYY-MM-DDTHH:MM:SS.fffffffZ``: seven fractional digits (.NET ticks) and ``Z``
_TICKS_SHAPE = 28


def _parse_general(text: str) -> datetime:
    """``parse_utc`` for every accepted form."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    if "." in raw:
        head, _, rest = raw.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        raw = f"{head}.{(digits + '000000')[:6]}{rest}"
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {text!r}")
    return value.astimezone(UTC)


#: the times accepted from callers (HTTP parameters, cursors, CLI arguments): no incident is
#: older than the Unix epoch (the listing arithmetic counts microseconds from it), and a bound
#: far in the future is kept far from ``datetime.max``, so adding an offset never overflows
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
RANGE_TEXT = "between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z"


def parse_input_time(text: str) -> datetime:
    """A time given by a caller: ISO-8601 with a zone, in ``[EARLIEST, LATEST)``.

    Raises:
        ValueError: not such a timestamp, or out of that range (also where converting the zone
            would overflow, e.g. ``0001-01-01T00:00:00+01:00``).
    """
    try:
        value = parse_utc(text)
    except OverflowError:
        raise ValueError(f"must be {RANGE_TEXT}") from None
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be {RANGE_TEXT}")
    return value
