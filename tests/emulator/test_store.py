"""The incident store's indexed listings equal a plain filter-and-sort of the same incidents,
through random activity, late arrival and every order (pure: no HTTP)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from emulator import data, defender, odata, store
from emulator.model import Incident, format_time

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TENANT = "00000000-0000-4000-8000-000000000001"


def _store(count: int, late: float = 0.0) -> store.IncidentStore:
    incidents = store.IncidentStore(seed=5, seeded_at=NOW, late_arrival_seconds=late)
    generator = data.TenantGenerator(TENANT, 0, 5)
    incidents.add_tenant(TENANT, generator, data.seed_incidents(generator, count, NOW))
    return incidents


def _filters(rng: random.Random, incidents: list[Incident]) -> list[str]:
    """Filters whose bounds mostly fall exactly on an incident's time (the edge cases)."""

    def at(created: bool = False) -> str:
        chosen = rng.choice(incidents)
        value = chosen.created_time if created else chosen.last_update_time
        return format_time(value + timedelta(microseconds=rng.choice((-1, 0, 0, 0, 1))))

    return [
        "",
        f"lastUpdateTime ge {at()}",
        f"lastUpdateTime gt {at()}",
        f"lastUpdateTime lt {at()}",
        f"lastUpdateTime le {at()}",
        f"lastUpdateTime ge {at()} and lastUpdateTime lt {at()}",
        f"lastUpdateTime gt {at()} and lastUpdateTime le {at()}",
        f"createdTime ge {at(True)} and createdTime le {at(True)}",
        f"createdTime gt {at(True)} and createdTime lt {at(True)}",
        f"lastUpdateTime ge {at()} and status eq 'Active'",
        f"status eq 'Resolved' or lastUpdateTime gt {at()}",
        f"createdTime lt {at(True)} and lastUpdateTime ge {at()}",
        "status eq 'Redirected'",
    ]


ORDERS = [
    store.NEWEST_FIRST,
    store.Order("update", descending=False),
    store.Order("created", descending=True),
    store.Order("created", descending=False),
    store.Order("arbitrary", seed=3),
]


def _naive(incidents: list[Incident], text: str, order: store.Order) -> list[int]:
    predicate = odata.parse_filter(text, defender.LEGACY_FILTER)
    found = [i for i in incidents if predicate(defender._legacy_row(i))]
    if order.kind == "arbitrary":
        return sorted(i.incident_id for i in found)  # compared as sets
    if order.kind == "update":
        found.sort(key=lambda i: (i.last_update_time, i.incident_id), reverse=order.descending)
    else:
        found.sort(key=lambda i: (i.created_time, i.incident_id), reverse=order.descending)
    return [i.incident_id for i in found]


def _listed(
    incidents: store.IncidentStore, text: str, order: store.Order, now: datetime, top: int
) -> list[int]:
    parsed = odata.parse_filter_terms(text, defender.LEGACY_FILTER)
    query = store.make_query(text, parsed, defender._legacy_row, defender.LEGACY_TIMES)
    ids: list[int] = []
    skip = 0
    while True:
        page, total = incidents.page(TENANT, query, order, now, skip, top)
        ids.extend(i.incident_id for i in page)
        skip += top
        if skip >= total:
            assert len(ids) == total
            break
    return sorted(ids) if order.kind == "arbitrary" else ids


@pytest.mark.parametrize("round_seed", [1, 2, 3])
def test_listings_equal_a_plain_filter_and_sort(round_seed: int) -> None:
    rng = random.Random(round_seed)  # noqa: S311 - seeded test data
    incidents = _store(400)
    now = NOW
    for _ in range(6):
        now += timedelta(seconds=rng.randint(1, 90))
        incidents.simulate(
            TENANT,
            now,
            create=rng.randint(0, 8),
            update=rng.randint(0, 15),
            merge=rng.randint(0, 3),
        )
        latest = incidents.snapshot(TENANT)
        for text in _filters(rng, latest):
            for order in ORDERS:
                expected = _naive(latest, text, order)
                assert _listed(incidents, text, order, now, rng.choice((7, 50))) == expected, (
                    text,
                    order,
                )


def test_cached_listing_follows_changes_between_pages() -> None:
    """A cached (arbitrary-order) listing read again after activity equals a fresh one."""
    incidents = _store(300)
    text = f"lastUpdateTime ge {format_time(NOW - timedelta(days=4))} and status ne 'Resolved'"
    order = store.Order("arbitrary", seed=9)
    parsed = odata.parse_filter_terms(text, defender.LEGACY_FILTER)
    query = store.make_query(text, parsed, defender._legacy_row, defender.LEGACY_TIMES)
    incidents.page(TENANT, query, order, NOW, 0, 10)
    incidents.simulate(TENANT, NOW + timedelta(seconds=5), create=5, update=20, merge=2)
    cached, total = incidents.page(TENANT, query, order, NOW, 0, 1000)
    fresh = _store(300)
    fresh.simulate(TENANT, NOW + timedelta(seconds=5), create=5, update=20, merge=2)
    expected, expected_total = fresh.page(TENANT, query, order, NOW, 0, 1000)
    assert total == expected_total
    assert [i.incident_id for i in cached] == [i.incident_id for i in expected]


def test_late_arrival_shows_the_last_due_version() -> None:
    """With a delay, the view holds for each incident its newest version whose lastUpdateTime
    is at least the delay old; newer versions wait, older ones are replaced."""
    late = 60.0
    incidents = _store(200, late=late)
    versions: dict[int, list[Incident]] = {i.incident_id: [i] for i in incidents.snapshot(TENANT)}
    rng = random.Random(4)  # noqa: S311 - seeded test data
    now = NOW
    for step in range(12):
        now += timedelta(seconds=rng.randint(5, 40))
        result = incidents.simulate(TENANT, now, create=2, update=6, merge=1)
        touched = {*result.created, *result.updated, *(x for pair in result.merged for x in pair)}
        for incident_id in touched:
            version = incidents.latest(TENANT, incident_id)
            assert version is not None
            versions.setdefault(incident_id, []).append(version)
        cutoff = now - timedelta(seconds=late)
        expected = []
        for history in versions.values():
            due = [v for v in history if v.last_update_time <= cutoff]
            if due:
                expected.append(due[-1])
        shown = incidents.visible_snapshot(TENANT, now)
        assert sorted(shown, key=lambda i: i.incident_id) == sorted(
            expected, key=lambda i: i.incident_id
        ), step
        text = f"lastUpdateTime ge {format_time(NOW - timedelta(days=1))}"
        assert _listed(incidents, text, store.NEWEST_FIRST, now, 25) == _naive(
            expected, text, store.NEWEST_FIRST
        )


def test_time_bounds() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    us = store.micros(at)
    parsed = odata.parse_filter_terms(
        "lastUpdateTime gt 2026-01-01T00:00:00Z and lastUpdateTime le 2026-01-01T00:00:00Z",
        defender.LEGACY_FILTER,
    )
    assert store.time_bounds(parsed.terms, defender.LEGACY_TIMES) == ("update", us + 1, us + 1)
    query = store.make_query("x", parsed, defender._legacy_row, defender.LEGACY_TIMES)
    assert query.exact
    mixed = odata.parse_filter_terms(
        "createdTime ge 2026-01-01T00:00:00Z and status eq 'Active'", defender.LEGACY_FILTER
    )
    query = store.make_query("y", mixed, defender._legacy_row, defender.LEGACY_TIMES)
    assert query.bounds == ("created", us, None)
    assert not query.exact
    either = odata.parse_filter_terms(
        "lastUpdateTime ge 2026-01-01T00:00:00Z or status eq 'Active'", defender.LEGACY_FILTER
    )
    assert store.make_query("z", either, defender._legacy_row, defender.LEGACY_TIMES).bounds is None
