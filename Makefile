# Two commands matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint format typecheck bench services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Embedded default: SQLite file + in-process pool, demo site, server on http://127.0.0.1:8080
run: $(STAMP)
	$(BIN)/calltracker migrate
	$(BIN)/calltracker demo
	$(BIN)/calltracker serve

## Start (installing if needed) Redis, PostgreSQL, Chromium and ffmpeg for the tests.
services:
	bash scripts/ensure-test-services.sh

## The whole suite against real Redis, PostgreSQL, SQLite and headless Chromium.
test: $(STAMP) services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) services
	$(BIN)/python bench/visits.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
