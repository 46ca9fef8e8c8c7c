"""``GET /incidents`` over more incidents sharing one last-update time than a page holds,
against the emulator's harsher behaviours: an order that does not follow time, ``@odata.count``
on the first page only or on none, and incidents leaving the tie while it is paged (``$skip``
offsets moving between pages). Every incident the activity did not touch is listed exactly once.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Face, setenv, tenants, truth
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e


def _versions(cloud: LocalCloud, tenant: str) -> dict[str, str]:
    return {str(i["id"]): str(i["lastUpdateDateTime"]) for i in truth(cloud, tenant)}


def _list_all(face: Face, tenant: str, top: int) -> list[str]:
    answer = face.get("/incidents", params={"top": str(top), "tenant": tenant})
    seen: list[str] = []
    for _ in range(100):
        assert answer.status == 200, answer.body[:400]
        body: dict[str, Any] = answer.json()
        seen += [str(i["id"]) for i in body["value"]]
        if "nextLink" not in body:
            return seen
        answer = face.follow(body["nextLink"])
    raise AssertionError("the listing did not end")


@pytest.mark.parametrize(
    ("api", "order", "count_pages"),
    [
        ("graph", "newest", "every"),
        ("graph", "arbitrary", "first"),
        ("graph", "arbitrary", "none"),
        # legacy pages hold 100 and carry no count: its pair ties are read without one
        ("legacy", "arbitrary", "none"),
    ],
)
def test_a_tie_over_a_page_is_listed_once_each_while_offsets_move(
    face: Face,
    cloud: LocalCloud,
    monkeypatch: pytest.MonkeyPatch,
    api: str,
    order: str,
    count_pages: str,
) -> None:
    setenv(monkeypatch, DEFENDER_API=api)
    _, customer = tenants(cloud)
    # one activity call stamps everything it touches with one instant: 130 new incidents share
    # both their last-update and creation time (a pair tie over a page, read through links),
    # then 60 updates share a newer last-update time with creation times of either kind
    cloud.admin("POST", "activity", {"tenant": customer, "create": 130})
    cloud.admin("POST", "activity", {"tenant": customer, "update": 60})
    before = _versions(cloud, customer)
    cloud.admin(
        "POST",
        "behaviour",
        {
            "order": order,
            "order_seed": 11,
            "count_pages": count_pages,
            # an incident of the tenant leaves its instant after every other page served: the
            # offsets of the pages after it move
            "paging_activity": {"tenant": customer, "every": 2, "update": 1},
        },
    )
    try:
        seen = _list_all(face, customer, top=100)
    finally:
        cloud.admin("POST", "behaviour", {"paging_activity": None})
    after = _versions(cloud, customer)
    untouched = {k for k, v in before.items() if after.get(k) == v}
    assert len(untouched) > 120  # the activity moved only a few
    assert len(seen) == len(set(seen)), "an incident was listed twice"
    missed = untouched - set(seen)
    assert not missed, f"{len(missed)} incidents that never changed were not listed"
    assert set(seen) <= set(before) | set(after)
