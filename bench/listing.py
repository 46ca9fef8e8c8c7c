"""``python -m bench.listing [--incidents N] [--ticks K]``: what listing costs in API calls: a
backfill under each ``@odata.count`` behaviour, incremental runs after bursts of updates, and a
steady state, on both surfaces, against the pages the incidents fill.

One emulator (a home tenant of ``--incidents`` incidents over 30 days, quotas off, tokens that
outlive the run) and one Azurite; the product's ``Ingestor`` runs in this process, wired by
``shared.bootstrap`` like the CLI, but on a clock shared with the emulator that the benchmark
moves forward: a timer tick every 5 minutes (the default schedule) costs no waiting, and the
runs keep the default safety lag (60 s) and overlap (10 minutes).

- **Backfill** of the whole tenant (the lookback) with ``@odata.count`` on every Graph page,
  the first only, or none (the emulator's ``count_pages``), newest first and in an arbitrary
  order; legacy carries no count.
- **Bursts**: after a backfill, bursts of 100 and 1,000 updates land 3 minutes before a tick,
  at one instant (one ``/_emulator/activity`` call: what a bulk status change produces) or
  spread over one second (ten calls 0.1 s apart); the tick's run, and the next one (no new
  activity: the burst is re-read through the overlap), are measured: API calls against the
  pages a perfect reader needs for what the run's window holds.
- **Steady state**: 10, 100 and 1,000 updates between ticks, spread over the 5 minutes; the
  calls per tick (mean of the last ticks), with the default overlap and with none, so the
  overlap re-read shows apart; and what 1,000 tenants cost per hour at that rate against the
  documented incident quota (50 calls a minute and 1,500 an hour per tenant; Graph publishes only
  429 + ``Retry-After`` for incidents, and the client applies the same limits to it).

Each run is also set against what a reader that knew every timestamp would need under the same
proof rules (``testkit.slice_service.perfect``: an instant over a page takes a creation-time
slice per page, a slice in the unsettled tail one short page). Writes
``bench/results/listing.json`` and prints the tables the README quotes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.__main__ import _clear_storage, machine
from emulator import defender
from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "listing.json"
PAGE = {"graph": 50, "legacy": 100}
TICK = timedelta(minutes=5)
UNLIMITED: dict[str, tuple[Any, ...]] = {"incidents": (), "alerts": (), "hunting": ()}
SHAPES = {"instant": "at one instant", "second": "within a second"}
#: the documented incident quota per tenant (https://learn.microsoft.com/defender-xdr/api-list-incidents)
QUOTA_PER_MINUTE, QUOTA_PER_HOUR = 50, 1500


class Clock:
    """Now, moved forward by the benchmark (shared by the emulator and the ingestion). It
    starts ``behind`` the real clock and never passes it: JWT libraries check a token's issue
    time against the real clock, so a token issued "in the future" would be refused."""

    def __init__(self, behind: timedelta = timedelta(hours=20)) -> None:
        self.offset = -behind

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by
        if self.offset > timedelta(0):
            raise SystemExit("the benchmark's clock ran past the real one: start it further back")


class Tenant:
    """The emulator's home tenant as the runs see it: activity, truth, ingestion."""

    def __init__(self, emu: Emulator, azurite: Azurite, clock: Clock) -> None:
        self.emu, self.azurite, self.clock = emu, azurite, clock
        self.tid = emu.home_tenant_id

    def fresh(self) -> None:
        """The seeded state and empty storage."""
        self.emu.reset()
        _clear_storage(self.azurite.connection_string)

    def update(self, count: int) -> None:
        """``count`` updates at the current instant (one activity call)."""
        self.emu.world.store.simulate(self.tid, self.clock(), create=0, update=count, merge=0)

    def in_window(
        self, api: str, start: str, end: str, settled: datetime | None
    ) -> tuple[int, int]:
        """Incidents whose latest version lies in ``[start, end)``, and the requests a reader
        that knew every timestamp would need for them under the same proof rules (slices
        before ``settled`` read across pages; the rest single pages, an instant over a page
        split by creation time: ``testkit.slice_service.perfect``)."""
        from shared.core.clock import parse_utc
        from shared.defender.slices import to_us
        from testkit.slice_service import perfect

        updated = "lastUpdateTime" if api == "legacy" else "lastUpdateDateTime"
        created = "createdTime" if api == "legacy" else "createdDateTime"
        lo, hi = to_us(parse_utc(start)), to_us(parse_utc(end))
        truth = defender.truth(self.emu.world.store, self.tid, api, None)
        data = {
            n: (to_us(parse_utc(str(i[updated]))), to_us(parse_utc(str(i[created]))))
            for n, i in enumerate(truth)
        }
        inside = sum(1 for u, _ in data.values() if lo <= u < hi)
        return inside, perfect(data, lo, hi, PAGE[api], None if settled is None else to_us(settled))

    def ingest(self, api: str, overlap: int = 10) -> dict[str, Any]:
        """One run of the product's ingestion (wired like the CLI); its summary."""
        from shared.bootstrap import build
        from shared.core.settings import load

        env = dict(self.emu.app_settings())
        env.update(
            DATA_STORAGE_CONNECTION_STRING=self.azurite.connection_string,
            DEFENDER_API=api,
            INGEST_TENANTS=self.tid,
            INGEST_PAGE_SIZE=str(PAGE[api]),
            INGEST_OVERLAP_MINUTES=str(overlap),
            INGEST_TIME_BUDGET_SECONDS="3600",
            API_RATE_LIMIT_INCIDENTS="100000/1",
            API_RATE_LIMIT_ALERTS="100000/1",
        )
        # azure-identity reads the managed identity's endpoint from the process environment
        for name in [n for n in os.environ if n.startswith(("DEFENDER_", "INGEST_", "IDENTITY_"))]:
            del os.environ[name]
        os.environ.update(env)
        services = build(load(env), clock=self.clock)
        result = services.ingestor().run_tenant(self.tid).to_json()
        if not result["ok"] or not result["complete"]:
            raise SystemExit(f"ingest did not finish: {result}")
        return dict(result)


def _figures(tenant: Tenant, api: str, result: dict[str, Any], overlap: int = 10) -> dict[str, Any]:
    from shared.core.clock import parse_utc

    # Graph reads slices older than the late-arrival bound across pages (legacy never does)
    end = parse_utc(result["end"])
    settled = end - timedelta(minutes=overlap) if api == "graph" else None
    window, best = tenant.in_window(api, result["start"], result["end"], settled)
    pages = max(1, math.ceil(window / PAGE[api]))
    return {
        "api_calls": result["api_calls"],
        "window_incidents": window,
        "pages": pages,
        "calls_per_page": round(result["api_calls"] / pages, 2),
        "perfect": best,
        "calls_per_perfect": round(result["api_calls"] / max(1, best), 2),
        "stored": result["incidents"],
        "listed": result["listed"],
        # where the calls go: slices of the listing completed, and requests that did not complete
        # one (overflows that narrowed their slice, and the creation-time parts of an instant
        # over a page before its last; the run summary's ``splits``)
        "slices": result["slices"],
        "splits": result["splits"],
    }


def backfills(tenant: Tenant, api: str) -> list[dict[str, Any]]:
    """A backfill of the tenant under each count behaviour and order."""
    counts = ("every", "first", "none") if api == "graph" else ("none",)
    rows = []
    for count_pages in counts:
        for order in ("newest", "arbitrary"):
            tenant.fresh()
            tenant.emu.set_behaviour(count_pages=count_pages, order=order, order_seed=3)
            fig = _figures(tenant, api, tenant.ingest(api))
            rows.append({"count_pages": count_pages, "order": order, **fig})
            print(f"{api} backfill {count_pages} {order}: {json.dumps(fig)}", file=sys.stderr)
    return rows


def bursts(tenant: Tenant, api: str) -> dict[str, Any]:
    """Bursts of 100 and 1,000 updates, at one instant and over one second."""
    clock = tenant.clock
    tenant.fresh()
    backfill = tenant.ingest(api)
    out: dict[str, Any] = {"backfill_api_calls": backfill["api_calls"], "bursts": []}
    for size in (100, 1000):
        for shape in ("instant", "second"):
            clock.advance(TICK - timedelta(minutes=3))
            if shape == "instant":
                tenant.update(size)
            else:
                for _ in range(10):
                    tenant.update(size // 10)
                    clock.advance(timedelta(seconds=0.1))
            clock.advance(timedelta(minutes=3))
            first = _figures(tenant, api, tenant.ingest(api))
            clock.advance(TICK)
            again = _figures(tenant, api, tenant.ingest(api))
            row = {"size": size, "shape": shape, "tick": first, "next_tick": again}
            out["bursts"].append(row)
            print(f"{api} burst {size} {shape}: {json.dumps(row)}", file=sys.stderr)
    return out


def steady(tenant: Tenant, api: str, rate: int, ticks: int, overlap: int) -> dict[str, Any]:
    """``rate`` updates between ticks, spread over each tick; calls per tick."""
    clock = tenant.clock
    tenant.fresh()
    tenant.ingest(api, overlap)
    batches = min(rate, 50)
    per = [rate // batches + (1 if i < rate % batches else 0) for i in range(batches)]
    rows = []
    for _ in range(ticks):
        for n in per:
            clock.advance(TICK / batches)
            tenant.update(n)
        rows.append(_figures(tenant, api, tenant.ingest(api, overlap), overlap))
    last = rows[len(rows) // 2 :]  # the first ticks still carry the backfill's overlap
    calls = statistics.mean(r["api_calls"] for r in last)
    pages = statistics.mean(r["pages"] for r in last)
    best = statistics.mean(r["perfect"] for r in last)
    return {
        "rate": rate,
        "overlap_minutes": overlap,
        "ticks": rows,
        "calls_per_tick": round(calls, 2),
        "pages_per_tick": round(pages, 2),
        "perfect_per_tick": round(best, 2),
    }


def quota(calls_per_tick: float) -> dict[str, Any]:
    """What 1,000 tenants cost per hour at this many calls per tick (every 5 minutes)."""
    per_hour = calls_per_tick * 12
    return {
        "calls_per_tenant_per_hour": round(per_hour, 1),
        "share_of_hourly_quota": round(per_hour / QUOTA_PER_HOUR, 3),
        "calls_per_tenant_per_tick": round(calls_per_tick, 2),
        "share_of_minute_quota_at_a_tick": round(calls_per_tick / QUOTA_PER_MINUTE, 3),
        "calls_per_hour_1000_tenants": round(per_hour * 1000),
        "calls_per_second_1000_tenants": round(per_hour * 1000 / 3600, 1),
    }


def table(fig: dict[str, Any]) -> str:
    lines = [
        "| surface | `@odata.count` on | order | API calls | incidents | pages they fill | "
        "calls / pages | a perfect reader | slices / other requests |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for api, rows in fig["backfill"].items():
        for r in rows:
            lines.append(
                f"| {api} | {r['count_pages'] if api == 'graph' else 'none (legacy)'} | "
                f"{r['order']} | {r['api_calls']} | {r['window_incidents']:,} | {r['pages']} | "
                f"{r['calls_per_page']} | {r['perfect']} | {r['slices']} / {r['splits']} |"
            )
    lines += [
        "",
        "| surface | burst | when | API calls | incidents in the window | pages they fill | "
        "a perfect reader | calls / perfect | slices / other requests |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for api, data in fig["bursts"].items():
        for row in data["bursts"]:
            for when, key in (("its tick", "tick"), ("the next tick", "next_tick")):
                r = row[key]
                lines.append(
                    f"| {api} | {row['size']:,} {SHAPES[row['shape']]} "
                    f"| {when} | {r['api_calls']} | {r['window_incidents']:,} | {r['pages']} | "
                    f"{r['perfect']} | {r['calls_per_perfect']} | {r['slices']} / {r['splits']} |"
                )
    lines += [
        "",
        "| surface | updates per tick | calls per tick (overlap 10 min) | without overlap | "
        "overlap re-read | pages per tick | a perfect reader | calls per tenant per hour | "
        "share of 1,500/h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for api, rows in fig["steady"].items():
        for rate, pair in rows.items():
            with_, without = pair["overlap"], pair["no_overlap"]
            q = pair["quota"]
            lines.append(
                f"| {api} | {int(rate):,} | {with_['calls_per_tick']} | "
                f"{without['calls_per_tick']} | "
                f"{round(with_['calls_per_tick'] - without['calls_per_tick'], 2)} | "
                f"{with_['pages_per_tick']} | {with_['perfect_per_tick']} | "
                f"{q['calls_per_tenant_per_hour']} | "
                f"{q['share_of_hourly_quota']:.0%} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing")
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--apis", default="graph,legacy")
    parser.add_argument("--rates", default="10,100,1000")
    args = parser.parse_args(argv)
    clock = Clock()
    config = EmulatorConfig(
        seed=21,
        home_incidents=args.incidents,
        customer_tenants=0,
        quotas=UNLIMITED,
        token_lifetime=86_399,
    )
    started = time.perf_counter()
    fig: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": machine(),
        "incidents": args.incidents,
        "backfill": {},
        "bursts": {},
        "steady": {},
    }
    with Azurite() as azurite, Emulator(config, clock=clock) as emu:
        tenant = Tenant(emu, azurite, clock)
        for api in args.apis.split(","):
            fig["backfill"][api] = backfills(tenant, api)
            fig["bursts"][api] = bursts(tenant, api)
            fig["steady"][api] = {}
            for rate in (int(r) for r in args.rates.split(",")):
                with_ = steady(tenant, api, rate, args.ticks, 10)
                without = steady(tenant, api, rate, args.ticks, 0)
                fig["steady"][api][str(rate)] = {
                    "overlap": with_,
                    "no_overlap": without,
                    "quota": quota(with_["calls_per_tick"]),
                }
                print(
                    f"{api} steady {rate}: {with_['calls_per_tick']} calls/tick "
                    f"({without['calls_per_tick']} without overlap)",
                    file=sys.stderr,
                )
    fig["seconds"] = round(time.perf_counter() - started, 1)
    fig["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(fig, indent=2) + "\n")
    print(table(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
