# Two commands do all the set-up: `make run` (the app with demo data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi

.PHONY: run test lint bench help

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

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-deps
	$(BIN)/python -m bench $(BENCH_ARGS)
