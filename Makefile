# Image service: the commands a user and CI run. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run test unit integration deploy-test lint bench reconcile up deploy destroy url down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed ## create .venv and install runtime + dev dependencies

run: install ## serve the API on http://127.0.0.1:$(PORT) (moto's server unless AWS_ENDPOINT_URL is set)
	$(BIN)/python -m scripts.run_local --port $(PORT)

test: install ## run every test: unit, integration, deploy (skips print their reason)
	$(BIN)/pytest

unit: install ## unit tests only (Chalice test client + moto in-process)
	$(BIN)/pytest tests/unit

integration: install ## real HTTP: chalice local + moto's server as subprocesses
	$(BIN)/pytest tests/integration

deploy-test: install ## Terraform + packaged Lambda against moto's server
	$(BIN)/pytest tests/deploy

lint: install ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean: ## remove build output
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
