"""The ground floor: pure building blocks every other floor may use (errors and their
outcomes, settings, clock, clouds, per-surface spellings, logging, JSON). No I/O, no SDK.
"""
