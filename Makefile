# Two commands do all the set-up: `make run` (the app with demo data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi

.PHONY: run test lint bench vendor help

help:
	@echo "make run    - install, migrate, load demo data (first time) and serve on http://$(HOST):$(PORT)"
	@echo "make test   - install test tools, then ruff, mypy and the whole test suite"
	@echo "make bench  - run the benchmarks (figures next to their baselines)"

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[embedded]'
	@touch $@

$(VENV)/.test-deps: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(BIN)/flask db upgrade
	$(BIN)/flask demo-data --if-empty
	$(BIN)/flask run --host $(HOST) --port $(PORT)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy

# axe-core for the browser tests' accessibility checks (skipped quietly without npm).
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --ignore-scripts && touch $@; \
	 else echo "npm not found: browser accessibility checks will be skipped"; fi

test: lint node_modules/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

# Copy htmx from the pinned npm package into static/js (the copy is committed).
vendor: node_modules/.installed
	cp node_modules/htmx.org/dist/htmx.min.js static/js/htmx.min.js

bench: $(VENV)/.test-deps
	$(BIN)/python -m bench $(BENCH_ARGS)
