"""The client keeps the services' listing contract, against the emulator.

- default page sizes are the surface's (legacy 100, Graph 50) and no request asks for
  ``$skip`` beyond 500 (docs/defender-service.md#listing-limits);
- a nextLink whose authority parsers read two ways (``https://localhost:P\\@127.0.0.1:P``,
  which urllib3 sends to ``localhost``) is refused before the token goes anywhere.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import requests

from shared.core.errors import UnexpectedResponseError
from shared.defender.client import DefenderClient
from tests.conftest import LocalCloud
from tests.defender.conftest import ClientFactory, truth

pytestmark = pytest.mark.e2e


def _listing_requests(cloud: LocalCloud, surface: str) -> list[dict[str, list[str]]]:
    endpoint = "legacy.incidents.list" if surface == "legacy" else "graph.incidents.list"
    return [
        parse_qs(r["query"]) for r in cloud.admin("GET", "requests") if r["endpoint"] == endpoint
    ]


def test_default_page_size_is_the_surfaces_own(
    make_client: ClientFactory, cloud: LocalCloud, surface: str
) -> None:
    """Without INGEST_PAGE_SIZE: $top=100 on legacy, $top=50 on Graph (which refuses more);
    every incident is listed and no request skips past 500."""
    client = make_client(surface)
    cloud.admin("POST", "reset")
    incidents = client.list_incidents()
    assert len(incidents) == len(truth(cloud, surface))
    queries = _listing_requests(cloud, surface)
    assert len(queries) > 1
    assert {q["$top"][0] for q in queries} == {"100" if surface == "legacy" else "50"}
    assert all(int(q.get("$skip", ["0"])[0]) <= 500 for q in queries)


def test_backslash_next_link_never_carries_the_token_elsewhere(
    make_client: ClientFactory, cloud: LocalCloud
) -> None:
    """The emulator builds nextLink from the Host header. A Host of
    ``localhost:P\\@127.0.0.1:P`` gives a link that passes a urllib.parse origin check (host
    127.0.0.1) while requests would connect to ``localhost``. The client refuses the link: the
    emulator sees exactly one bearer request, on the listing, from the configured host."""
    base = make_client("graph", INGEST_PAGE_SIZE="5")
    url = cloud.emulator.url
    authority = url.split("://", 1)[1]
    assert authority.startswith("127.0.0.1:"), url
    session = requests.Session()
    session.trust_env = False
    session.verify = str(cloud.emulator.ca_path)
    session.headers["Host"] = f"{authority.replace('127.0.0.1', 'localhost')}\\@{authority}"
    client = DefenderClient(
        session=session, token=base._token, api="graph", base_url=url, page_size=5
    )
    cloud.admin("POST", "reset")
    with pytest.raises(UnexpectedResponseError, match="backslash"):
        client.list_incidents()
    bearer = [
        r
        for r in cloud.admin("GET", "requests")
        if r["authorization"] == "bearer" and not r["endpoint"].startswith("keyvault.")
    ]
    assert [r["endpoint"] for r in bearer] == ["graph.incidents.list"]
    assert "%5C" not in bearer[0]["path"] and "@" not in bearer[0]["path"]


def test_listing_relies_on_no_order_even_with_activity(
    make_client: ClientFactory, cloud: LocalCloud, surface: str
) -> None:
    """The emulator answers in an arbitrary (time-ignoring) order and creates and updates
    incidents after every second page served: `list_incidents` still returns every incident
    that existed before it started (in some version), each once, newest first."""
    client = make_client(surface)
    cloud.admin("POST", "reset")
    before = {
        str(r["incidentId"] if surface == "legacy" else r["id"]) for r in truth(cloud, surface)
    }
    cloud.admin("POST", "behaviour", {"order": "arbitrary", "order_seed": 3})
    cloud.admin(
        "POST",
        "behaviour",
        {"paging_activity": {"tenant": None, "every": 2, "create": 2, "update": 3, "merge": 0}},
    )
    try:
        incidents = client.list_incidents()
    finally:
        cloud.admin("POST", "reset")
    ids = [i.id for i in incidents]
    assert len(ids) == len(set(ids))
    assert before <= set(ids)
    stamps = [i.last_update for i in incidents]
    assert stamps == sorted(stamps, reverse=True)
    queries = _listing_requests(cloud, surface) or []
    assert all(int(q.get("$skip", ["0"])[0]) <= 500 for q in queries)
