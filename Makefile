# The two set-up commands: `make demo` and `make test`. Both install what they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup demo test lint typecheck unit bench clean

help:
	@echo "make demo   - start the local cloud (emulator + Azurite), ingest its tenants, print what landed"
	@echo "make test   - set up and run everything: ruff, mypy, pytest"
	@echo "make bench  - run the benchmarks under bench/ and write bench/results/ (tenants.json: 1,000-tenant fan-out)"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

setup: $(STAMP) node_modules/.installed

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(PY) -m pytest

demo: setup
	$(PY) -m emulator.demo

bench: setup
	$(PY) -m bench
	$(PY) -m bench.tenants

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .demo
