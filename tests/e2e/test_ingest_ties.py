"""Ingestion of a pair tie (more incidents sharing both their last-update and creation time
than a page holds: the listing planner's last resort, paged pass after pass until
``PairPasses`` adds up) against the emulator, with incidents leaving the tie while it is paged
(``$skip`` offsets move), an order that does not follow time and ``@odata.count`` on the first
page or none: every version that stood still is stored, none twice."""

from __future__ import annotations

import pytest

from shared.bootstrap import build
from shared.core.settings import Settings
from testkit.storage_view import archived_lines, duplicates, incident_key
from tests.conftest import LocalCloud
from tests.e2e.guarantees import truth, versions

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("api", "count_pages"), [("graph", "first"), ("graph", "none"), ("legacy", "none")]
)
def test_a_pair_tie_over_a_page_is_ingested_whole_while_offsets_move(
    cloud: LocalCloud, app_env: dict[str, str], api: str, count_pages: str
) -> None:
    customer = cloud.emulator.tenant_ids[1]
    # one activity call stamps its new incidents with one instant, created and updated: 130
    # share both (a page holds 50 on Graph, 100 on the legacy API)
    cloud.admin("POST", "activity", {"tenant": customer, "create": 130})
    before = versions(truth(cloud, customer, api))
    cloud.admin(
        "POST",
        "behaviour",
        {
            "order": "arbitrary",
            "order_seed": 5,
            "count_pages": count_pages,
            "paging_activity": {"tenant": customer, "every": 2, "update": 1},
        },
    )
    settings = Settings.from_env({**app_env, "DEFENDER_API": api, "INGEST_TENANTS": customer})
    result = build(settings).ingestor().run_tenant(customer)
    cloud.admin("POST", "behaviour", {"paging_activity": None})
    assert result.ok and result.complete, result
    assert result.tie_warnings >= 1  # the pair was paged through its links
    stood_still = before & versions(truth(cloud, customer, api))
    lines = archived_lines(app_env["DATA_STORAGE_CONNECTION_STRING"], customer)
    assert duplicates(lines) == []
    missing = stood_still - {incident_key(line) for line in lines}
    assert not missing, f"{len(missing)} versions that stood still were not stored"
