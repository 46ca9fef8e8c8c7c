"""``testkit.port_fakes.MemoryDefender`` and the real ``DefenderClient`` (against the emulator,
on both API surfaces) pass the same checks of the on-demand ``Defender`` port: listing and
newest-first paging agree, filters hold, an unknown incident is ``NotFoundError``, an update
shows in the answer and in the next read. The millisecond tests that use the fake
(``tests/unit/test_port_fakes.py``) prove nothing if it drifts from the client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.core.errors import NotFoundError
from shared.defender.model import normalize
from shared.defender.operations import IncidentUpdate
from shared.defender.queries import IncidentQuery
from shared.defender.slices import to_us
from testkit.fakes import graph_incident
from testkit.port_fakes import MemoryDefender

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("graph", marks=pytest.mark.e2e),
        pytest.param("legacy", marks=pytest.mark.e2e),
    ]
)
def defender(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        statuses = ("active", "inProgress", "resolved")
        yield MemoryDefender(
            "11111111-1111-1111-1111-111111111111",
            [
                normalize(
                    graph_incident(
                        str(1000 + n), T0 + timedelta(minutes=n // 3), status=statuses[n % 3]
                    ),
                    "graph",
                )
                for n in range(60)
            ],
        )
        return
    cloud = request.getfixturevalue("cloud")
    make_client = request.getfixturevalue("make_client")
    cloud.admin("POST", "reset")
    yield make_client(request.param)


def key(incident: Any) -> tuple[int, str]:
    return (to_us(incident.last_update), incident.id)


def test_newest_pages_cover_the_listing_once_newest_first(defender: Any) -> None:
    listed = {i.id for i in defender.list_incidents()}
    assert len(listed) > 20
    seen: list[str] = []
    before = None
    for _ in range(100):
        page = defender.newest_page(IncidentQuery(), before=before, top=20, max_calls=30)
        keys = [key(i) for i in page.items]
        assert keys == sorted(keys, reverse=True) and len(keys) <= 20
        assert before is None or all(k < before for k in keys)
        seen += [i.id for i in page.items]
        if page.following is None:
            break
        before = page.following
    assert sorted(seen) == sorted(listed)  # every incident once


def test_listing_filters_hold_and_limits_cut(defender: Any) -> None:
    everything = defender.list_incidents()
    active = defender.list_incidents(IncidentQuery(statuses=("active",)))
    assert active and all(i.status == "active" for i in active)
    assert {i.id for i in active} == {i.id for i in everything if i.status == "active"}
    assert len(defender.list_incidents(limit=5)) == 5


def test_an_unknown_incident_is_not_found_and_a_known_one_is_read(defender: Any) -> None:
    some = defender.list_incidents(limit=1)[0]
    assert defender.get_incident(some.id).id == some.id
    with pytest.raises(NotFoundError):
        defender.get_incident("987654321")


def test_an_update_shows_in_the_answer_and_the_next_read(defender: Any) -> None:
    target = defender.list_incidents(IncidentQuery(statuses=("active",)), limit=1)[0]
    changed = defender.update_incident(
        target.id, IncidentUpdate.parse(status="inProgress", tags=["triaged"])
    )
    assert changed.id == target.id and changed.status == "inProgress"
    assert "triaged" in changed.tags and changed.last_update >= target.last_update
    again = defender.get_incident(target.id)
    assert again.status == "inProgress" and "triaged" in again.tags
