"""Process-wide set-up that the entry points (the CLI's ``python -m shared``, the Functions
worker's first invocation) make once: the pace of the cyclic garbage collector."""

from __future__ import annotations

import gc

#: net container allocations between two young-generation collections (CPython: 700)
YOUNG_COLLECTION_EVERY = 50_000


def pace_collector() -> None:
    """Collect cyclic garbage less often than CPython does by default.

    Why: ingestion decodes answers of up to 100 incidents into a few hundred thousand dicts and
    lists per thousand incidents, which reference counting frees; at CPython's default pace (a
    young collection every 700 net allocations, https://docs.python.org/3/library/gc.html#gc.set_threshold)
    a 10,000-incident legacy backfill ran 453 young and 41 middle collections that found about
    3,000 objects in all, and spent about 5% of its CPU in them (docs/benchmarks.md). Cycles are
    rare here, so collecting every 50,000 allocations holds at most a few MB of them a little
    longer. A collector turned off (threshold 0) or already slower is left as it is.
    """
    young, *older = gc.get_threshold()
    if gc.isenabled() and 0 < young < YOUNG_COLLECTION_EVERY:
        gc.set_threshold(YOUNG_COLLECTION_EVERY, *older)
