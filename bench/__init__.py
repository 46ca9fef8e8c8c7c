"""Benchmarks, run on demand (``make bench``); never part of the timed test suite."""
