"""What tests and benchmarks share: in-memory fakes of the ports (``testkit.fakes``), read-backs
of what the app stored in Azurite (``storage_view``), a stand-in for the Functions host's queue
loop (``functions_host``) and settings helpers (``env``).

``tests/`` and ``bench/`` both import this package and never each other's modules (the floors
of ``docs/architecture.md``). Never deployed (``.funcignore``).
"""
