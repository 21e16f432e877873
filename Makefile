# chaos — every command a newcomer needs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
DATA   ?= ../shared/data
# `mlflow models serve` starts uvicorn by name: the venv's bin must come first on PATH.
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help venv serve test lint train db-postgres clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## create .venv with the locked dependencies and the chaos package

serve: venv ## serve model/ on http://$(HOST):$(PORT) (embedded SQLite default, or CHAOS_DATABASE_URL)
	$(BIN)/chaos db init
	$(BIN)/mlflow models serve -m model --env-manager local -h $(HOST) -p $(PORT)

test: venv ## run the whole test suite (needs PostgreSQL on 127.0.0.1:5432) with coverage
	$(BIN)/ruff check .
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered

lint: venv ## ruff
	$(BIN)/ruff check .

train: venv ## train on $(DATA)/customers.csv, log and register a version, export it to model/
	$(BIN)/chaos train --customers $(DATA)/customers.csv --export model

db-postgres: venv ## load $(DATA) into the database at CHAOS_DATABASE_URL
	$(BIN)/chaos db init
	$(BIN)/chaos db load socio_eco $(DATA)/socio_eco.csv
	$(BIN)/chaos db load customers $(DATA)/customers.csv

clean: ## remove the venv and local state (var/: embedded database, MLflow store)
	rm -rf $(VENV) var .pytest_cache .coverage
