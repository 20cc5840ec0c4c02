# Image service: the commands a user and CI run. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: need-docker need-localstack help install run token test unit integration browser deploy-test fuzz lint bench bench-deps reconcile keys up package deploy destroy url down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}' | sed 's/\$$(PORT)/$(PORT)/g'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# The CLI as a command that runs from any folder: the venv's Python on this checkout.
$(BIN)/image-client: | $(VENV)/.installed
	printf '#!/bin/sh\n# image-client: the image service CLI (scripts/client.py); written by make install\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m scripts.client "$$@"\n' \
	  "$(CURDIR)" "$(abspath $(BIN))/python" > $@
	chmod +x $@

install: $(VENV)/.installed $(BIN)/image-client ## create .venv, install runtime + dev dependencies and the CLI (.venv/bin/image-client)

run: install ## serve the API on http://127.0.0.1:$(PORT) (moto's server unless AWS_ENDPOINT_URL is set; AUTH_MODE=jwt for tokens; RELOAD=1 restarts on code changes)
	$(BIN)/python -m scripts.run_local --port $(PORT) $(if $(RELOAD),--reload)

token: install ## print a bearer token for USER (TTL seconds, default 3600) signed with the dev stage's JWT_SECRET
	@$(BIN)/python -m scripts.token "$(USER)" $(if $(TTL),--ttl $(TTL))

# Unit tests run in parallel (pytest-xdist; PYTEST_WORKERS=1 runs them in this process),
# then the others in one process: they start servers and share infra/chalice.
PYTEST_WORKERS ?= auto
test: install ## run every test: unit (in parallel), integration, deploy (skips print their reason)
	$(BIN)/pytest -n $(PYTEST_WORKERS) tests/unit; unit=$$?; \
	$(TF_ENV) $(BIN)/pytest --ignore=tests/unit; rest=$$?; \
	exit $$(( unit != 0 ? unit : rest ))

unit: install ## unit tests only (Chalice test client + moto in-process), in parallel
	$(BIN)/pytest -n $(PYTEST_WORKERS) tests/unit

integration: install ## real HTTP: chalice local + moto's server as subprocesses
	$(BIN)/pytest tests/integration

browser: install ## the web gallery in Debian's Chromium (Playwright), against make run's script
	$(BIN)/pytest tests/browser

deploy-test: install ## Terraform + packaged Lambda against moto's server
	$(TF_ENV) $(BIN)/pytest tests/deploy

fuzz: install ## a longer fuzz run of image processing (FUZZ_EXAMPLES, default 20000; make test runs 500)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20000} $(BIN)/pytest tests/fuzz -p no:cacheprovider

lint: install ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install bench-deps ## what listing (vs Scan + filter), upload, cold start and image processing (vs libvips) cost; writes bench/results.md (ARGS=--help)
	$(BIN)/python -m bench.run $(ARGS)

bench-deps: ## libvips' vipsthumbnail for the image-processing comparison (Debian libvips-tools; apt-get when root)
	@if command -v vipsthumbnail > /dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	  (apt-get install -y -q --no-install-recommends libvips-tools || \
	   (apt-get update -q && apt-get install -y -q --no-install-recommends libvips-tools)) > /dev/null \
	  || echo "bench-deps: could not install libvips-tools; the libvips column will be skipped" >&2; \
	else echo "bench-deps: vipsthumbnail missing (apt-get install libvips-tools); the libvips column will be skipped" >&2; fi

reconcile: install ## report S3/DynamoDB orphans (FIX=1 deletes them); finds a running `make run`, else AWS_ENDPOINT_URL
	$(BIN)/python -m scripts.reconcile $(if $(FIX),--fix)

# --- Deploy: LocalStack via tflocal (the same infra/ deploys to AWS with plain terraform) ---
STAGE ?= localstack
REGION ?= us-east-1
LOCALSTACK_URL ?= http://localhost:4566
TF_DIR := infra
PACKAGED := $(TF_DIR)/chalice/chalice.tf.json
# `terraform init` uses a local provider mirror when TF_PLUGIN_DIR is set (offline machines);
# unset, it is TF_PLUGIN_MIRROR (/opt/tf-plugins) when that directory exists, as in .ci/run.
TF_PLUGIN_MIRROR ?= /opt/tf-plugins
TF_PLUGIN_DIR ?= $(if $(wildcard $(TF_PLUGIN_MIRROR)),$(TF_PLUGIN_MIRROR))
# The deploy tests read TF_PLUGIN_DIR from their environment.
TF_ENV := $(if $(TF_PLUGIN_DIR),TF_PLUGIN_DIR=$(TF_PLUGIN_DIR))
TF_INIT_FLAGS := -input=false $(if $(TF_PLUGIN_DIR),-plugin-dir=$(TF_PLUGIN_DIR))
# LocalStack state lives in its own workspace, so infra/ can also hold a real AWS deploy.
LOCALSTACK_TF := TF_WORKSPACE=localstack AWS_ENDPOINT_URL=$(LOCALSTACK_URL) AWS_DEFAULT_REGION=$(REGION) DISABLE_DEPRECATION_NOTICE=1
TF_VARS := -input=false -var-file=localstack.tfvars -var stage=$(STAGE) -var region=$(REGION)
# TOKEN_SECRET: the caller's TF_VAR_token_secret, else the one generated into infra/.token_secret;
# JWT_SECRET likewise (TF_VAR_jwt_secret, infra/.jwt_secret). The authorizer: TF_VAR_auth_mode,
# else AUTH_MODE, else none on LocalStack (plain terraform defaults to jwt).
WITH_SECRET := TF_VAR_token_secret="$${TF_VAR_token_secret:-$$(cat .token_secret)}" TF_VAR_jwt_secret="$${TF_VAR_jwt_secret:-$$(cat .jwt_secret)}" TF_VAR_auth_mode="$${TF_VAR_auth_mode:-$${AUTH_MODE:-none}}"

keys: install ## new CloudFront signing key pair: private key to SSM (/image-service/$(STAGE)/cloudfront-key/…) and infra/.cloudfront_private_key.pem, public key appended to infra/cloudfront_keys.auto.tfvars.json (ARGS=--retire, --no-parameter)
	$(BIN)/python -m scripts.cloudfront_keys --stage $(STAGE) $(ARGS)

# `make up` and `make deploy` check first what they need and, when it is missing, stop at
# once with one line saying what to do instead (no Docker: `make run`, `make deploy-test`).
# The checks are make functions, so make prints that line as its only output; `make -n`
# (a dry run: no command runs) skips them.
DRY_RUN = $(findstring n,$(firstword -$(MAKEFLAGS)))
WITHOUT_DOCKER := without Docker, `make run` serves the API on the embedded emulator and `make deploy-test` runs the same Terraform against it
need-docker:
	$(if $(DRY_RUN),,$(if $(shell timeout 4 docker info > /dev/null 2>&1 && timeout 4 docker compose version > /dev/null 2>&1 && echo ok),,$(error make $(MAKECMDGOALS): no Docker engine answers (`docker info` failed) or its compose plugin is missing: start or install Docker; $(WITHOUT_DOCKER))))

need-localstack:
	$(if $(DRY_RUN),,$(if $(shell curl -fsS -m 4 $(LOCALSTACK_URL)/_localstack/health > /dev/null 2>&1 && echo ok),,$(error make $(MAKECMDGOALS): LocalStack does not answer at $(LOCALSTACK_URL)/_localstack/health: `make up` starts it (Docker); $(WITHOUT_DOCKER))))

up: need-docker ## start LocalStack (docker compose) and wait until it is healthy
	docker compose up -d --wait localstack
	curl -fsS $(LOCALSTACK_URL)/_localstack/health > /dev/null

package: install ## chalice package --pkg-format terraform into infra/chalice, then post-process it
	rm -rf $(TF_DIR)/chalice
	AWS_DEFAULT_REGION=$(REGION) $(BIN)/chalice package --pkg-format terraform --stage $(STAGE) $(TF_DIR)/chalice
	$(BIN)/python -m scripts.package_terraform $(PACKAGED)

$(PACKAGED):
	$(MAKE) package

$(TF_DIR)/.token_secret $(TF_DIR)/.jwt_secret:
	umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))' > $@

deploy: need-localstack package $(TF_DIR)/.token_secret $(TF_DIR)/.jwt_secret ## package the app and apply infra/ to LocalStack with tflocal (after `make up`)
	cd $(TF_DIR) && $(LOCALSTACK_TF) $(abspath $(BIN))/tflocal init $(TF_INIT_FLAGS)
	cd $(TF_DIR) && $(LOCALSTACK_TF) $(WITH_SECRET) $(abspath $(BIN))/tflocal apply -auto-approve $(TF_VARS)
	@echo "API base URL (make url prints it again):"
	@$(MAKE) -s --no-print-directory url

destroy: | $(PACKAGED) $(TF_DIR)/.token_secret $(TF_DIR)/.jwt_secret ## destroy the LocalStack deployment (tflocal destroy)
	cd $(TF_DIR) && $(LOCALSTACK_TF) $(abspath $(BIN))/tflocal init $(TF_INIT_FLAGS)
	cd $(TF_DIR) && $(LOCALSTACK_TF) $(WITH_SECRET) $(abspath $(BIN))/tflocal destroy -auto-approve $(TF_VARS)

url: ## print the deployed API's base URL (LocalStack's execute-api URL)
	@url="$$(cd $(TF_DIR) && TF_WORKSPACE=localstack terraform output -no-color -raw api_url 2>/dev/null)"; \
	case "$$url" in http*) echo "$$url" ;; \
	  *) echo "no API deployed to LocalStack yet: make up && make deploy" >&2; exit 1 ;; esac

down: ## stop LocalStack and drop its state
	docker compose down

clean: ## remove build output
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
