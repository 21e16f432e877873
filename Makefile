# chaos — every command a newcomer needs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
DATA   ?= ../shared/data
# `mlflow models serve` (the benchmark's anchor) starts uvicorn by name: the venv's bin first.
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help runtime venv docs tools secrets-scan serve test test-fast lint train registry promote db-postgres image base-image bench bench-ab profile bench-batch soak outage replay clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Two layers in one .venv, as in the images: what serving needs (requirements-serve.lock, the
# serving image's), which `make serve` installs alone; then the full lock (training) and the test,
# Spark and drift tools, for every other target.
# uv installs the locked versions (.venv and .tools in 58 s here, against 76 s for .venv alone with
# pip, caches warm); pip, which every venv has, only installs uv. Bytecode is compiled at install:
# where PYTHONDONTWRITEBYTECODE is set (this machine sets it), an import never writes it, and every
# process the tests start would compile MLflow again (an import of it 12.5 s instead of 5.5 s).
UV_VERSION := 0.13.9
# $(call new_venv,DIR): a venv with uv in it; $(call uv_install,DIR) ARGS: uv's pip install into it.
new_venv = $(PYTHON) -m venv $(1) && $(1)/bin/pip install --quiet uv==$(UV_VERSION)
uv_install = $(1)/bin/uv pip install --python $(1)/bin/python --quiet --compile-bytecode

$(VENV)/.runtime: requirements-serve.lock pyproject.toml
	$(call new_venv,$(VENV))
	$(call uv_install,$(VENV)) --no-deps -r requirements-serve.lock
	$(call uv_install,$(VENV)) --no-deps -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime requirements.lock requirements-drift.lock requirements-dev.lock requirements-spark.lock
	$(call uv_install,$(VENV)) -r requirements.lock -r requirements-dev.lock -r requirements-spark.lock
	$(call uv_install,$(VENV)) --no-deps -r requirements-drift.lock
	touch $@

runtime: $(VENV)/.runtime
venv: $(VENV)/.installed ## create .venv with the locked dependencies and the chaos package (make serve: the serving lock only)

# The offline infrastructure checkers live apart from the service's venv: checkov pins its own
# versions of packages MLflow also needs.
TOOLS := .tools
$(TOOLS)/.installed: tools/requirements.lock tools/package-lock.json
	$(call new_venv,$(TOOLS)/venv)
	$(call uv_install,$(TOOLS)/venv) -r tools/requirements.lock
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $@

# PyPI's detect-secrets has a venv of its own: checkov's fork, bc-detect-secrets, installs the same
# module (detect_secrets), and in one venv the last one installed would overwrite the other.
SECRETS_VENV := $(TOOLS)/secrets-venv
$(SECRETS_VENV)/.installed: tools/requirements-secrets.lock
	$(call new_venv,$(SECRETS_VENV))
	$(call uv_install,$(SECRETS_VENV)) --no-deps -r tools/requirements-secrets.lock
	touch $@

tools: $(TOOLS)/.installed $(SECRETS_VENV)/.installed ## install the infrastructure checkers: checkov, kubernetes-validate, hadolint, yamllint, gitlab-ci-local, detect-secrets

secrets-scan: $(SECRETS_VENV)/.installed ## detect-secrets (every plugin, no baseline) over every file git tracks or would add; fails on any finding
	git ls-files -z --cached --others --exclude-standard | xargs -0 $(SECRETS_VENV)/bin/detect-secrets-hook

serve: runtime ## serve model/ on http://$(HOST):$(PORT) (embedded SQLite default, or CHAOS_DATABASE_URL)
	$(BIN)/chaos db init
	$(BIN)/chaos serve --model model --host $(HOST) --port $(PORT)

# Two workers, a whole file each at a time (pytest-xdist): a file's servers and fixtures stay in
# one process, and the tests mostly wait on servers, so two share 2 cores well. In the order
# tests/conftest.py gives (the longest files first), not xdist's default (most tests first).
TEST_WORKERS ?= 2
test: venv tools ## run the whole test suite (needs PostgreSQL on 127.0.0.1:5432, podman) with coverage
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --cov --cov-report=term-missing:skip-covered --durations=30

# The unit and data-layer tests: the top-level modules' beside the folders mirroring the package's parts.
UNIT_TESTS := tests/test_*.py tests/contract tests/http tests/scoring tests/predlog tests/lifecycle
test-fast: venv ## the unit and data-layer tests (PostgreSQL): no image, no server, no soak, no training
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider $(UNIT_TESTS) -m "not training and not spark"

lint: venv ## ruff
	$(BIN)/ruff check .

train: venv ## train on $(DATA)/customers.csv, log and register a version (MLFLOW_TRACKING_URI, else var/), export it to model/
	$(BIN)/chaos train --customers $(DATA)/customers.csv --export model

# The model registry here: what k8s/registry runs in production, on loopback, with PostgreSQL
# behind it and the artifacts in var/registry instead of a GCS bucket.
REGISTRY_PORT ?= 5001
REGISTRY_DB   ?= mlflow
registry: venv ## run a model registry (mlflow server) on http://127.0.0.1:$(REGISTRY_PORT), PostgreSQL database $(REGISTRY_DB)
	psql -h 127.0.0.1 -U root -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(REGISTRY_DB)'" \
	  | grep -q 1 || createdb -h 127.0.0.1 -U root $(REGISTRY_DB)
	$(BIN)/mlflow server --backend-store-uri postgresql+psycopg2://root@127.0.0.1:5432/$(REGISTRY_DB) \
	  --artifacts-destination var/registry --host 127.0.0.1 --port $(REGISTRY_PORT) --workers 2

promote: venv ## point ALIAS (staging|production) at VERSION if it passes the gate: make promote VERSION=3 ALIAS=staging
	$(BIN)/chaos promote $(VERSION) --alias $(ALIAS) --customers $(DATA)/customers.csv

db-postgres: venv ## load $(DATA) into the database at CHAOS_DATABASE_URL
	$(BIN)/chaos db init
	$(BIN)/chaos db load socio_eco $(DATA)/socio_eco.csv
	$(BIN)/chaos db load customers $(DATA)/customers.csv

soak: venv ## 10 min of steady load on the real server (PostgreSQL), then a 60 s database outage under load; figures in bench/
	$(BIN)/python -m bench.soak --seconds 600 --rate 50 --out bench/soak.json
	$(BIN)/python -m bench.outage --down 60 --out bench/outage.json
	$(BIN)/python -m bench.render

replay: venv ## a year of production lived month by month (real PostgreSQL, mlflow server, chaos serve, the nightly jobs); bench/replay.json, docs/replay.png; its registry kept in var/replay
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.render

outage: venv ## stop a private PostgreSQL for 60 s under steady load on two servers (stale and strict); figures in bench/outage.json
	$(BIN)/python -m bench.outage --down 60 --out bench/outage.json
	$(BIN)/python -m bench.render

docs: runtime ## render the figures in docs/ from the JSON the benchmarks wrote (bench/*.json)
	$(BIN)/python -m bench.render

bench: venv ## serve our model, a plain mlflow.sklearn anchor and a constant floor side by side under wrk, then what observability costs (PostgreSQL)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(BIN)/python -m bench.compare
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.reasons
	$(BIN)/python -m bench.render

profile: venv ## where a 1000-row request's time goes: py-spy samples chaos serve under wrk; bench/breakdown.json
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(BIN)/python -m bench.breakdown
	$(BIN)/python -m bench.render

BEFORE ?= 7f55d74
bench-ab: venv ## what a change costs: chaos serve at BEFORE (default 7f55d74, before observability) against the working tree, alternated under wrk
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	rm -rf var/ab-before && git worktree prune && git worktree add --detach var/ab-before $(BEFORE)
	$(BIN)/python -m bench.ab --before var/ab-before --rounds 9

bench-batch: venv ## batch-score the 38k customers and a generated 1M-row file (indicators: CHAOS_DATABASE_URL or embedded)
	$(BIN)/chaos db init
	$(BIN)/python bench/make_customers.py --rows 1000000 --out var/bench/customers_1m.csv
	$(BIN)/chaos score --input $(DATA)/customers.csv --output var/bench/scores_38k.csv
	$(BIN)/chaos score --input var/bench/customers_1m.csv --output var/bench/scores_1m.csv

IMAGE      ?= localhost/chaos:dev
JOBS_IMAGE ?= localhost/chaos/jobs:dev
BASE_IMAGE ?= python:3.11-slim
image: ## build both images with podman: serving as $(IMAGE), jobs as $(JOBS_IMAGE) (BASE_IMAGE=localhost/chaos-base:bookworm offline)
	BASE_IMAGE=$(BASE_IMAGE) .ci/build-image $(IMAGE) serve
	BASE_IMAGE=$(BASE_IMAGE) .ci/build-image $(JOBS_IMAGE) jobs

base-image: ## make localhost/chaos-base:bookworm from Debian packages (for machines without a registry)
	.ci/build-base-image

clean: ## remove the venv and local state (var/: embedded database, MLflow store)
	rm -rf $(VENV) $(TOOLS) tools/node_modules var .pytest_cache .coverage .gitlab-ci-local
