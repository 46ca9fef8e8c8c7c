"""The two yardsticks ours is measured against: the raw limit and a naive connector.

- ``raw_limit``: fetch every page on one keep-alive session and gzip each body; nothing is
  stored. No ingestion can be faster than this on the same API.
- ``naive_connector``: written the way typical connectors are: ``requests``, follow
  nextLink, one uncompressed blob per page, then one table upsert per incident, one after
  another. It keeps no checkpoint, lease or dedup, so it is also less correct; it is the speed
  a user would get from such a script.

Graph answers ``$skip`` over 500 with 400, so on Graph both walk the time range in windows
(``$count`` on a window's first page; halved when it holds more than 500), as a Graph script
must.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

RESOURCE = {"legacy": "https://api.security.microsoft.com", "graph": "https://graph.microsoft.com"}
GRAPH_WINDOW_ITEMS = 400


def token(authority: str, tenant: str, client_id: str, secret: str, api: str, ca: str) -> str:
    """A client-credentials token, as a script gets it (one POST)."""
    response = requests.post(
        f"{authority}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": f"{RESOURCE[api]}/.default",
        },
        verify=ca,
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pages(
    http: requests.Session, base: str, api: str, bearer: str, expected: int, days: float = 8
) -> Iterator[bytes]:
    """Every listing page's body (legacy: one nextLink chain; Graph: time windows)."""
    headers = {"Authorization": f"Bearer {bearer}"}

    def chain(url: str, params: dict[str, str] | None) -> Iterator[bytes]:
        while url:
            response = http.get(url, params=params, headers=headers, timeout=120)
            response.raise_for_status()
            yield response.content
            url, params = response.json().get("@odata.nextLink"), None

    if api == "legacy":
        yield from chain(f"{base}/api/incidents", {"$top": "100"})
        return
    # windows sized to hold ~400 incidents, adapted to the density seen; the first request of
    # a window asks for $count, so a window over the $skip limit is halved after one call
    end = datetime.now(UTC) + timedelta(minutes=5)
    cursor = end - timedelta(days=days)
    width = (end - cursor) * GRAPH_WINDOW_ITEMS / max(expected, 1)
    url = f"{base}/v1.0/security/incidents"
    while cursor < end:
        hi = min(cursor + width, end)
        flt = f"lastUpdateDateTime ge {_fmt(cursor)} and lastUpdateDateTime lt {_fmt(hi)}"
        params = {"$top": "50", "$expand": "alerts", "$filter": flt, "$count": "true"}
        response = http.get(url, params=params, headers=headers, timeout=120)
        response.raise_for_status()
        first = response.json()
        count = int(first.get("@odata.count", len(first["value"])))
        if count > 500:
            if hi - cursor <= timedelta(microseconds=1):
                raise SystemExit(
                    f"more than 500 incidents at {_fmt(cursor)}: a window walk cannot page them"
                )
            width = (hi - cursor) / 2
            continue
        yield response.content
        link = first.get("@odata.nextLink")
        if link:
            yield from chain(link, None)
        width = (hi - cursor) * min(4.0, max(0.25, GRAPH_WINDOW_ITEMS / max(count, 1)))
        cursor = hi


def raw_limit(http: requests.Session, base: str, api: str, bearer: str, expected: int) -> int:
    """Fetch and gzip every page; the number of incidents read."""
    count = 0
    for body in pages(http, base, api, bearer, expected):
        gzip.compress(body, compresslevel=6)
        count += len(json.loads(body)["value"])
    return count


def naive_connector(
    http: requests.Session, base: str, api: str, bearer: str, expected: int, storage: str
) -> int:
    """One uncompressed blob per page, one table upsert per incident; incidents written."""
    from azure.data.tables import TableServiceClient, UpdateMode
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(storage).get_container_client("naive")
    if not blobs.exists():
        blobs.create_container()
    table = TableServiceClient.from_connection_string(storage).create_table_if_not_exists(
        "NaiveIncidents"
    )
    count = 0
    for n, body in enumerate(pages(http, base, api, bearer, expected)):
        items: list[dict[str, Any]] = json.loads(body)["value"]
        blobs.upload_blob(f"page-{n:06d}.json", body, overwrite=True)
        for item in items:
            key = str(item.get("incidentId", item.get("id")))
            table.upsert_entity(
                {
                    "PartitionKey": "home",
                    "RowKey": key,
                    "Status": str(item.get("status")),
                    "LastUpdate": str(item.get("lastUpdateTime", item.get("lastUpdateDateTime"))),
                    "BlobName": f"page-{n:06d}.json",
                },
                mode=UpdateMode.REPLACE,
            )
            count += 1
    return count


def main(argv: list[str]) -> int:
    """``python -m bench.naive raw|naive``: one yardstick in a process of its own, so its CPU
    is its own (the benchmark's process also serves the emulator). Settings from the
    environment (the emulator's ``app_settings`` plus ``BENCH_*``); prints
    ``{"incidents", "seconds"}``."""
    import os
    import sys
    import time

    kind = argv[0]
    env = os.environ
    api = env["DEFENDER_API"]
    ca = env["EMULATOR_CA_CERT"]
    base = env["DEFENDER_GRAPH_API_URL"] if api == "graph" else env["DEFENDER_LEGACY_API_URL"]
    expected = int(env["BENCH_EXPECTED"])
    started = time.perf_counter()
    with requests.Session() as http:
        http.trust_env = False
        http.verify = ca
        bearer = token(
            env["DEFENDER_AUTHORITY_URL"],
            env["DEFENDER_TENANT_ID"],
            env["DEFENDER_CLIENT_ID"],
            env["BENCH_CLIENT_SECRET"],
            api,
            ca,
        )
        if kind == "raw":
            n = raw_limit(http, base, api, bearer, expected)
        else:
            n = naive_connector(
                http, base, api, bearer, expected, env["DATA_STORAGE_CONNECTION_STRING"]
            )
    json.dump({"incidents": n, "seconds": round(time.perf_counter() - started, 2)}, sys.stdout)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
