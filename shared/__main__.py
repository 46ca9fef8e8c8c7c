"""``python -m shared``: the Defender Bridge command line."""

from shared.cli import main

raise SystemExit(main())
