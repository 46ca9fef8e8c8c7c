"""``python -m shared``: the Defender Bridge command line."""

from shared.cli import main
from shared.core.runtime import pace_collector

pace_collector()  # a process of its own: process-wide set-up belongs here, not in ``main``
raise SystemExit(main())
