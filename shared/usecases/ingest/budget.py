"""A run's time budget: when to start another request, and how big a paged slice may be.

The run measures its slowest request (the last run's, kept in the checkpoint, until one is
measured). It starts a request only with twice that left (and at least 5 seconds), and sizes a
paged slice to the pages that fit in half the time left, so a slice never needs more time than
a run has and a backlog always moves on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: seconds a run keeps in hand after its last request (the checkpoint save, the summary)
MARGIN = 5.0


class Budget:
    """The time of one tenant's run.

    Args:
        seconds: the run's time budget.
        started: ``monotonic()`` when the run began.
        prior: the slowest request of the last run (0: unknown).
        monotonic: seconds, for the budget.
    """

    def __init__(
        self, seconds: float, *, started: float, prior: float, monotonic: Callable[[], float]
    ) -> None:
        self.deadline = started + seconds
        self.prior = prior
        #: the slowest request of this run so far (0: none measured)
        self.slowest = 0.0
        self._monotonic = monotonic

    @property
    def pace(self) -> float:
        """The request time planned with: this run's slowest, else the last run's."""
        return self.slowest or self.prior

    def now(self) -> float:
        return self._monotonic()

    def may_start(self) -> bool:
        """Whether there is time for one more request (twice the pace, at least ``MARGIN``)."""
        return self.deadline - self.now() >= max(MARGIN, 2 * self.pace)

    def fits(self, top: int) -> int | None:
        """The most incidents a paged slice may hold to be read in half the time left (None:
        nothing measured yet, no limit)."""
        pace = self.pace
        if pace <= 0:
            return None
        pages = (self.deadline - self.now() - MARGIN) / (2 * pace)
        return max(0, math.floor(pages)) * top

    def measured(self, began: float) -> float:
        """Note a request that began at ``began`` and ended now; returns now."""
        now = self.now()
        self.slowest = max(self.slowest, now - began)
        return now

    def spent(self) -> bool:
        """Whether the run's time is up (a request that failed at the deadline)."""
        return self.now() >= self.deadline - 1

    def stop_between_pages(self, now: float) -> bool:
        """Whether a paged slice must stop after the page that ended at ``now``."""
        return self.deadline - now < max(MARGIN, 2 * self.slowest)

    def rest_fits(self, pages_left: int, now: float) -> bool:
        """Whether the rest of a paged slice fits in half the time left."""
        return pages_left * self.slowest <= (self.deadline - now - MARGIN) / 2
