# One entry point for everything. Each target bootstraps what it needs on a fresh machine
# that has only python3 and make: a virtualenv in .venv with the locked dependencies.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.8
# The virtualenv's bin first: jsii and the CDK CLI must find its current Node, not the system's.
export PATH := $(BIN):$(PATH)
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC := 1
export CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK := 1

STAMP := $(VENV)/.installed

.PHONY: venv dev test lint typecheck unit integration e2e bench openapi synth deploy clean

venv: $(STAMP)

$(STAMP): requirements/dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements/dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

requirements/dev.lock: pyproject.toml
	@echo "pyproject.toml changed: run 'make lock' to refresh requirements/dev.lock" >&2
	@test -f $@

lock: venv
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 --universal \
		-o requirements/dev.lock

dev: venv
	$(BIN)/claude-jobs dev $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m benchmarks

openapi: venv
	$(BIN)/python -m claude_jobs.api.openapi > openapi.json

synth: venv
	cd infra && $(BIN)/npx --yes cdk synth --quiet

deploy: venv
	cd infra && $(BIN)/npx --yes cdk deploy --all

clean:
	rm -rf $(VENV) infra/cdk.out .pytest_cache .mypy_cache .ruff_cache
