# Pressroom: `make run` runs the whole system on the embedded default, `make test` runs every test.
# Both create .venv (Python >= 3.11) and install the pinned requirements only when they changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
RUN_STAMP := $(VENV)/.installed-requirements
DEV_STAMP := $(VENV)/.installed-requirements-dev

# Read by the integration-test fixtures (tests/conftest.py); override on the command line or in the environment.
PRESSROOM_TEST_DATABASE_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/test
PRESSROOM_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
export PRESSROOM_TEST_DATABASE_URL PRESSROOM_TEST_REDIS_URL

.DEFAULT_GOAL := help
.PHONY: help run test lint migrate seed bench
.PHONY: battery soak

help:
	@echo "make run      run every process on the embedded default (SQLite, embedded Redis, sims); Ctrl-C stops all"
	@echo "make test     run every test (unit, architecture, app, integration, e2e, browser) with pytest"
	@echo "make lint     ruff + import-linter (DESIGN §3: imports point down only)"
	@echo "make migrate  bring the database at DATABASE_URL to the latest schema"
	@echo "make seed     migrate, then load the demo data into an empty database"
	@echo "make bench    run the benchmarks (python -m bench), if there are any"
	@echo "make battery  the reliability and security battery (python -m battery): a table of figures, fails on one"
	@echo "make soak     the battery's soak: 5,000 orders through the whole system under worker, Redis and PostgreSQL faults (hours)"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Pressroom needs Python 3.11 or newer; '$(PYTHON)' is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo "not installed")." >&2; \
	  echo "Install one and run e.g. 'make $(MAKECMDGOALS) PYTHON=python3.11'." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -r requirements-dev.txt
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(PY) -m cli run

test: $(DEV_STAMP)
	PYTHONPATH=. $(PY) -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	PYTHONPATH=. $(BIN)/lint-imports

migrate: $(RUN_STAMP)
	$(PY) -m cli migrate

seed: $(RUN_STAMP)
	$(PY) -m cli seed

bench: $(DEV_STAMP)
	@if [ -f bench/__main__.py ]; then PYTHONPATH=. $(PY) -m bench; else echo "no benchmarks yet (bench/__main__.py)"; fi

battery: $(DEV_STAMP)
	PYTHONPATH=. $(PY) -m battery

soak: $(DEV_STAMP)
	PYTHONPATH=. $(PY) -m battery.soak $(SOAK_ARGS)
