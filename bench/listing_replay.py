"""``python -m bench.listing_replay [--seeds 21,22,...] [--only legacy]``: the planner alone on
``bench.listing``'s runs, in seconds instead of minutes.

The emulator's seeded incidents (``emulator.data``: the same generator, seed and activity as
``bench.listing``'s home tenant) are served by ``testkit.slice_service.Service`` in the
emulator's orders (newest first; the seeded arbitrary order), and each run is planned the way
``shared.usecases.ingest.run`` plans it (window, safety lag, overlap, the density a run leaves
in its checkpoint), on ``bench.listing``'s clock (which moves on while the emulator's seeded
state stays seeded when it started). No HTTP, no storage: call counts only. With seed 21 it
gives ``bench.listing``'s legacy backfill and burst figures and its Graph backfills exactly;
steady figures at 1,000 updates a tick move by a few calls (the benchmark's clock also follows
the wall clock while a run works, so its window edges fall a little elsewhere), and Graph's
incremental runs are not reproduced (the replay pays more), so those are the benchmark's
only. Other seeds give runs of the same shape, to tell a change from chance. Prints one line
per row of ``docs/listing.md``'s backfill, burst and steady tables: the calls and a perfect
reader's requests summed over the seeds, their ratio, then each seed's.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.listing import PAGE, TICK
from emulator import data as emulator_data
from emulator.config import EmulatorConfig
from emulator.model import Incident
from emulator.state import derive_ids
from shared.core.surfaces import SKIP_LIMIT
from shared.defender.slices import Listing, SliceRequest, to_us
from shared.usecases.ingest.window import plan_start
from testkit.slice_service import Data, Service, perfect

LAG = timedelta(seconds=60)
LOOKBACK = timedelta(days=30)


class EmulatorOrder(Service):
    """``Service`` in the emulator's seeded arbitrary order (``emulator.store``)."""

    tenant: str = ""
    order_seed: int = 3

    def matching(self, req: SliceRequest) -> list[tuple[int, int, int]]:
        if self.order != "arbitrary":
            return super().matching(req)
        a, b = to_us(req.start), to_us(req.end)
        out = [(u, c, i) for i, (u, c) in self.items.items() if a <= u < b]
        if req.created_start is not None and req.created_end is not None:
            c0, c1 = to_us(req.created_start), to_us(req.created_end)
            out = [x for x in out if c0 <= x[1] < c1]

        def key(x: tuple[int, int, int]) -> tuple[int, int]:
            text = f"{self.order_seed}:{self.tenant}:{x[2]}".encode()
            return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big"), x[2]

        out.sort(key=key)
        return out


@dataclass
class Tenant:
    """The emulator's home tenant: its incidents, activity, and the ingestion's checkpoint."""

    seed: int
    #: how long after the seeding the runs start (``bench.listing`` resets the emulator to its
    #: seeded state, seeded when it started, while its clock has moved on)
    age: timedelta = timedelta(0)
    incidents: int = 2000
    seeded_at: datetime = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    checkpoint: datetime | None = None
    read_at: datetime | None = None
    rate: float | None = None
    latest: dict[int, Incident] = field(default_factory=dict)

    def __post_init__(self) -> None:
        config = EmulatorConfig(seed=self.seed, home_incidents=self.incidents, customer_tenants=0)
        self.tid = derive_ids(config).tenant_ids[0]
        self.generator = emulator_data.TenantGenerator(self.tid, 0, self.seed)
        seeded = emulator_data.seed_incidents(self.generator, self.incidents, self.seeded_at)
        self.now = self.seeded_at + self.age
        self.latest = {i.incident_id: i for i in seeded}

    def update(self, count: int) -> None:
        emulator_data.simulate_activity(
            self.generator, self.latest, self.now, create=0, update=count, merge_count=0
        )

    def data(self) -> Data:
        return {
            k: (to_us(i.last_update_time), to_us(i.created_time)) for k, i in self.latest.items()
        }

    def ingest(
        self, api: str, *, order: str = "newest", counts: str = "none", overlap: int = 10
    ) -> tuple[int, int, int]:
        """One run; (calls, incidents in its window, a perfect reader's requests)."""
        gap = timedelta(minutes=overlap)
        upper = self.now - LAG
        read_before = None if self.read_at is None else self.read_at - LAG - gap
        # as the run plans it (``TenantRun._plan``)
        planned = plan_start(
            self.checkpoint, self.now, lookback=LOOKBACK, overlap=gap, settled=read_before
        )
        start = min(planned, upper)
        graph = api == "graph"
        settled = upper - gap if graph else None
        listing = Listing(
            start,
            upper,
            page_size=PAGE[api],
            rate_per_hour=self.rate,
            paged_items=SKIP_LIMIT if graph else 0,
            settled=settled,
        )
        items = self.data()
        service = EmulatorOrder(items, order=order, counts=counts, page_size=PAGE[api])
        service.tenant = self.tid
        while (request := listing.next()) is not None:
            service.answer(listing, request)
        if listing.cursor > start:
            self.checkpoint = listing.cursor
            self.rate = listing.rate_per_hour
        self.read_at = self.now
        lo, hi = to_us(start), to_us(upper)
        window = sum(1 for u, _ in items.values() if lo <= u < hi)
        best = perfect(items, lo, hi, PAGE[api], None if settled is None else to_us(settled))
        return service.calls, window, best


def backfills(seed: int, api: str, age: timedelta) -> list[tuple[str, int, int]]:
    rows = []
    for counts in ("every", "first", "none") if api == "graph" else ("none",):
        for order in ("newest", "arbitrary"):
            calls, _, best = Tenant(seed, age).ingest(api, order=order, counts=counts)
            rows.append((f"backfill {counts} {order}", calls, best))
    return rows


def bursts(seed: int, api: str, age: timedelta) -> list[tuple[str, int, int]]:
    tenant = Tenant(seed, age)
    tenant.ingest(api)
    rows = []
    for size in (100, 1000):
        for shape in ("instant", "second"):
            tenant.now += TICK - timedelta(minutes=3)
            if shape == "instant":
                tenant.update(size)
            else:
                for _ in range(10):
                    tenant.update(size // 10)
                    tenant.now += timedelta(seconds=0.1)
            tenant.now += timedelta(minutes=3)
            calls, _, best = tenant.ingest(api)
            rows.append((f"burst {size} {shape}", calls, best))
            tenant.now += TICK
            calls, _, best = tenant.ingest(api)
            rows.append((f"burst {size} {shape} next", calls, best))
    return rows


def steady(
    seed: int, api: str, age: timedelta, rate: int, overlap: int, ticks: int = 6
) -> tuple[float, float]:
    tenant = Tenant(seed, age)
    tenant.ingest(api, overlap=overlap)
    batches = min(rate, 50)
    per = [rate // batches + (1 if i < rate % batches else 0) for i in range(batches)]
    runs = []
    for _ in range(ticks):
        for n in per:
            tenant.now += TICK / batches
            tenant.update(n)
        runs.append(tenant.ingest(api, overlap=overlap))
    last = runs[len(runs) // 2 :]
    return statistics.mean(r[0] for r in last), statistics.mean(r[2] for r in last)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing_replay")
    parser.add_argument("--seeds", default="21")
    parser.add_argument("--apis", default="graph,legacy")
    parser.add_argument("--parts", default="backfill,bursts,steady")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = args.parts.split(",")
    table: dict[str, list[tuple[float, float]]] = {}
    # bench.listing's clock: backfills take no time, the bursts 4 x 10 minutes, each of the six
    # steady runs 6 ticks of 5 minutes; Graph's sections come first
    section = {"backfill": timedelta(0), "bursts": 4 * 2 * TICK, "steady": 6 * 6 * TICK}
    for api in args.apis.split(","):
        first = timedelta(0) if api == "graph" else section["bursts"] + section["steady"]
        for seed in seeds:
            rows: list[tuple[str, float, float]] = []
            if "backfill" in parts:
                rows += [(n, float(c), float(b)) for n, c, b in backfills(seed, api, first)]
            if "bursts" in parts:
                rows += [(n, float(c), float(b)) for n, c, b in bursts(seed, api, first)]
            if "steady" in parts:
                age = first + section["bursts"]
                for rate in (10, 100, 1000):
                    for overlap in (10, 0):
                        calls, best = steady(seed, api, age, rate, overlap)
                        rows.append((f"steady {rate} overlap {overlap}", calls, best))
                        age += 6 * TICK
            for name, calls, best in rows:
                table.setdefault(f"{api} {name}", []).append((calls, best))
    for name, runs in table.items():
        each = " ".join(f"{c:g}/{b:g}" for c, b in runs)
        total_c, total_b = sum(c for c, _ in runs), sum(b for _, b in runs)
        print(f"{name:40} {total_c:7g} {total_b:6g} {total_c / max(1, total_b):5.2f}x  {each}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
