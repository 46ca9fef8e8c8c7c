"""Advanced hunting answers typed by what the caller does: pure classification."""

from __future__ import annotations

import json

import pytest

from shared.core.errors import (
    BadRequestError,
    HuntingLimitError,
    HuntingQuotaError,
    ThrottledError,
    TransientError,
)
from shared.defender.model import normalize_hunting
from shared.defender.responses import classify


def _body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


SIZE = (
    "Query execution has exceeded the allowed result size. Optimize your query by limiting the "
    "number of results and try again."
)


@pytest.mark.parametrize(
    ("status", "message", "limit"),
    [
        (400, SIZE, "result_size"),
        (400, "Query execution has exceeded the allowed time limit of 00:03:00.", "timeout"),
        (504, "The query timed out", "timeout"),
        (408, "Request timeout", "timeout"),
    ],
)
def test_per_query_limits_are_hunting_limit_errors(status: int, message: str, limit: str) -> None:
    """Result size and timeout: HuntingLimitError (never transient: retrying cannot help)."""
    with pytest.raises(HuntingLimitError) as info:
        classify(status, {}, _body("BadRequest", message), hunting=True)
    assert info.value.limit == limit and info.value.status == status
    assert not isinstance(info.value, TransientError)


def test_cpu_quota_429_is_a_quota_error_and_a_call_quota_429_is_not() -> None:
    """A 429 naming the CPU quota waits for the cycle; the per-minute call quota is plain."""
    cpu = "CPU quota exceeded! maximum allowed 00:10:00 of query CPU time per 00:15:00"
    with pytest.raises(HuntingQuotaError) as info:
        classify(429, {"Retry-After": "600"}, _body("429", cpu), hunting=True)
    assert info.value.quota == cpu and info.value.retry_after == 600.0
    calls = "API calls quota exceeded! maximum allowed 45 per 00:01:00"
    with pytest.raises(ThrottledError) as plain:
        classify(429, {}, _body("429", calls), hunting=True)
    assert not isinstance(plain.value, HuntingQuotaError) and plain.value.retry_after == 60.0


def test_outside_hunting_the_same_answers_keep_their_usual_types() -> None:
    """Only hunting answers get the hunting types; a 504 elsewhere is transient."""
    with pytest.raises(BadRequestError) as info:
        classify(400, {}, _body("BadRequest", SIZE))
    assert not isinstance(info.value, HuntingLimitError)
    with pytest.raises(TransientError):
        classify(504, {}, _body("GatewayTimeout", "timed out"))
    with pytest.raises(ThrottledError) as throttled:
        classify(429, {}, _body("429", "CPU quota exceeded"))
    assert not isinstance(throttled.value, HuntingQuotaError)
    with pytest.raises(BadRequestError) as kql:
        classify(400, {}, _body("BadRequest", "Query failed: unknown table"), hunting=True)
    assert not isinstance(kql.value, HuntingLimitError)


def test_a_result_at_the_row_cap_is_flagged_truncated() -> None:
    """100,000 rows (the documented cap, cut without a marker) is flagged; fewer is not."""
    rows = [{"a": i} for i in range(100_000)]
    raw = {"schema": [{"name": "a", "type": "Int64"}], "results": rows}
    assert normalize_hunting(raw, "graph").truncated
    assert not normalize_hunting({**raw, "results": rows[:-1]}, "graph").truncated
    assert normalize_hunting({**raw, "results": rows[:5]}, "graph", row_limit=5).truncated
