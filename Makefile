# The two set-up commands: `make demo` and `make test`. Both install what they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov pins many packages of its own, so it lives in a virtual environment of its own
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: help setup demo test test-fast lint typecheck unit bench bench-emulator bench-push bench-listing chaos clean checkov

help:
	@echo "make demo   - start the local cloud (emulator + Azurite), ingest its tenants, print what landed"
	@echo "make test   - set up and run everything: ruff, mypy, checkov, pytest"
	@echo "make test-fast - the inner loop: every test that needs no Azurite, server or child process"
	@echo "make bench  - run the benchmarks under bench/ and write bench/results/ (SIZES=1000 for a quick run; tenants.json: 1,000-tenant fan-out; lookup.json: dedup check by table size; quota.json: a backlog under default quotas; listing.json: backfill by count behaviour, bursts, steady ticks)"
	@echo "make chaos  - randomized faults, kills, concurrent runs (RUNS=N JOBS=2); bench/results/chaos.json"
	@echo "make bench-emulator - benchmark the local cloud alone (bench/results/emulator.json)"
	@echo "make bench-push - ingestion with a push receiver that never answers (bench/results/push.json)"
	@echo "make bench-listing - API calls of listing: backfill by count behaviour, bursts, steady ticks (bench/results/listing.json)"
	@echo "make checkov - scan infra/ with checkov (offline): 0 failed checks and 0 parse errors, or it fails"

# requirements-sdk.txt (msgraph-sdk, for tests/sdk/) is installed here too, but is no part of
# requirements-dev.txt: the app and its own tests never need it.
$(STAMP): requirements.txt requirements-dev.txt requirements-sdk.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
		-r requirements-sdk.txt
	touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

# benchmark-only tools (chart, profiler): not runtime, not needed by `make test`
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $(BENCH_STAMP)

setup: $(STAMP) node_modules/.installed $(CHECKOV_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# infra/checkov_gate.py reads checkov's JSON: a parse error counts as a failure (checkov exits 0)
checkov: $(STAMP) $(CHECKOV_STAMP)
	$(PY) infra/checkov_gate.py infra

# pytest-xdist: two workers (this machine's cores), each with its own emulator and Azurite on
# free ports; most e2e time is spent waiting on them and on child processes, so two overlap
# well. --dist loadfile runs each file on one worker in its usual order: module-scoped clouds
# start once, and a module's tests that read what earlier ones left (the fuzz coverage check)
# still see it.
PYTEST_WORKERS ?= 2
test: setup lint typecheck checkov
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# the inner loop (under a minute): tests/conftest.py marks every test that uses the local cloud
# e2e; tests that start a child process are marked subprocess
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not subprocess" -n $(PYTEST_WORKERS) --dist loadfile

demo: setup
	$(PY) -m emulator.demo

# SIZES=1000 for a quick run (default 10,000 and 100,000)
SIZES ?= 10000,100000
bench: setup $(BENCH_STAMP)
	$(PY) -m bench --sizes $(SIZES)
	$(PY) -m bench.tenants
	$(PY) -m bench.lookup
	$(PY) -m bench.quota
	$(PY) -m bench.listing

# RUNS=N randomized chaos runs (bench/chaos.py) over JOBS workers, each with its own local
# cloud; results (counts by kind, seconds per run and per phase) in bench/results/chaos.json
RUNS ?= 20
JOBS ?= 2
chaos: setup
	$(PY) -m bench.chaos $(RUNS) --jobs $(JOBS)

bench-emulator: $(STAMP)
	$(PY) -m bench.emulator_bench

# REPS=N runs per regime (no subscription / a dead receiver / a dead receiver and the worker)
REPS ?= 5
bench-push: $(STAMP) node_modules/.installed
	$(PY) -m bench.push $(REPS)

# API calls against the pages they fill, both surfaces: a backfill under each @odata.count
# behaviour, bursts of 100 and 1,000 updates, 10/100/1,000 updates between ticks (a few minutes)
bench-listing: $(STAMP) node_modules/.installed
	$(PY) -m bench.listing

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .demo
