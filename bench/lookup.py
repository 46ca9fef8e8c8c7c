"""``python -m bench.lookup [N ...]``: one answer's dedup lookup against N stored rows.

For each N (default 10,000 and 100,000) a fresh table in Azurite holds N rows of one tenant
(one partition, as ingestion stores them). Measured per answer of 50 ids (half stored, half
not), median of ``REPEATS`` answers: the lookup (``IncidentTable.lookup``: point reads, in
parallel), the query it replaced (one ``PartitionKey eq t and (RowKey eq .. or ..)`` filter,
which Azure serves as a partition scan), and the create-first write of an answer of new rows
(``IncidentTable.create_new``: one transaction, no read), in wall and CPU milliseconds of this
process. Goal: the lookup costs the same per answer at 10,000 and 100,000 rows.
Writes ``bench/results/lookup.json``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient

from emulator.azurite import Azurite
from shared.defender.model import normalize
from shared.storage.table import IncidentTable
from shared.storage.values import TRANSACTION_SIZE, placed, plan

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "lookup.json"
TENANT = "00000000-0000-0000-0000-00000000b0b0"
ANSWER = 50
REPEATS = 21
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _incident(n: int) -> Any:
    when = T0 + timedelta(seconds=n)
    raw = {
        "id": str(n),
        "displayName": f"incident {n}",
        "status": "active",
        "severity": "medium",
        "createdDateTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "lastUpdateDateTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
        "alerts": [],
    }
    return normalize(raw, "graph")


def _seed(table: IncidentTable, size: int) -> float:
    started = time.perf_counter()
    for start in range(0, size, TRANSACTION_SIZE):
        rows = placed(plan(TENANT, [_incident(n) for n in range(start, start + TRANSACTION_SIZE)]))
        if table.create_new(TENANT, rows, T0) is None:
            raise SystemExit("seeding found rows already there")
    return time.perf_counter() - started


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def _median(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "wall_ms": round(statistics.median(s[0] for s in samples), 2),
        "cpu_ms": round(statistics.median(s[1] for s in samples), 2),
    }


def measure(azurite: Azurite, size: int, rng: random.Random) -> dict[str, Any]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = f"lookup{size}"
    client = service.create_table(name)
    table = IncidentTable(client)
    seeded = _seed(table, size)
    lookups: list[tuple[float, float]] = []
    scans: list[tuple[float, float]] = []
    creates: list[tuple[float, float]] = []
    fresh = size + 1_000_000
    for repeat in range(REPEATS):
        ids = [str(n) for n in rng.sample(range(size), ANSWER // 2)]
        ids += [str(fresh + repeat * ANSWER + n) for n in range(ANSWER // 2)]
        found: dict[str, Any] = {}
        lookups.append(_timed(lambda ids=ids, found=found: found.update(table.lookup(TENANT, ids))))
        if len(found) != ANSWER // 2:
            raise SystemExit(f"lookup found {len(found)} of {ANSWER // 2} stored rows")
        terms = " or ".join(f"RowKey eq @r{n}" for n in range(len(ids)))
        parameters: dict[str, Any] = {f"r{n}": rid for n, rid in enumerate(ids)}
        parameters["t"] = TENANT
        if repeat < 5:  # seconds each at 100,000 on Azurite: five are enough for a median
            scans.append(
                _timed(
                    lambda f=f"PartitionKey eq @t and ( {terms} )", p=parameters: list(
                        client.query_entities(f, parameters=p, select=["RowKey"])
                    )
                )
            )
        new = [_incident(2 * fresh + repeat * ANSWER + n) for n in range(ANSWER)]
        rows = placed(plan(TENANT, new))
        creates.append(_timed(lambda rows=rows: table.create_new(TENANT, rows, T0)))
    service.delete_table(name)
    return {
        "stored_rows": size,
        "seeding_seconds": round(seeded, 1),
        "answer_ids": ANSWER,
        "lookup_point_reads": _median(lookups),
        "or_query_partition_scan": _median(scans),
        "create_first_transaction": _median(creates),
    }


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    rng = random.Random(21)
    out: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "answer_ids": ANSWER,
        "repeats": REPEATS,
        "results": [],
    }
    with Azurite() as azurite:
        for size in sizes:
            figures = measure(azurite, size, rng)
            print(json.dumps(figures), flush=True)
            out["results"].append(figures)
    if len(out["results"]) >= 2:
        small, large = out["results"][0], out["results"][-1]
        out["lookup_wall_ratio"] = round(
            large["lookup_point_reads"]["wall_ms"] / small["lookup_point_reads"]["wall_ms"], 2
        )
        out["or_query_wall_ratio"] = round(
            large["or_query_partition_scan"]["wall_ms"]
            / small["or_query_partition_scan"]["wall_ms"],
            2,
        )
        print(
            f"lookup at {large['stored_rows']} vs {small['stored_rows']} rows: "
            f"{out['lookup_wall_ratio']}x (the or-query: {out['or_query_wall_ratio']}x)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
