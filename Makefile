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

.PHONY: venv lock dev hooks lint typecheck unit test bench bench-capacity bench-reliability fuzz openapi client-options synth layer-lock worker-lock deploy clean

venv: $(STAMP)

$(STAMP): requirements/dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements/dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

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

# The pure tests (tests/unit, tests/contract): no socket, no CLI, no stack; IP sockets are
# blocked for them (tests/conftest.py). The inner loop: well under a minute.
UNIT_TESTS := tests/unit tests/contract
unit: venv
	$(BIN)/pytest -q $(UNIT_TESTS) $(PYTEST_ARGS)

# Everything: first in parallel on TEST_WORKERS pytest-xdist workers (0: in this process) what
# may share the machine, then what is marked `serial` (tests/conftest.py: the e2e stacks, the
# worker image's layout), by itself, on SERIAL_WORKERS workers, grouped so that no two of the
# image's tests overlap and the e2e session stack starts once. Both parts mostly wait (the
# real CLI's start, visibility timeouts, leases, segments of a few seconds, long-polls): on two
# cores, three workers each finished a fresh clone's tests in 13.6-13.7 min against 14.6-15.0
# with two (four serial workers starved the stacks' long-polls). Both parts run; the first
# failure's status is the target's. Exit status 5 (no test selected, e.g. a PYTEST_ARGS path
# without serial tests) is no failure.
TEST_WORKERS ?= 3
SERIAL_WORKERS ?= $(TEST_WORKERS)
test: lint typecheck
	@status=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup -m "not serial" $(PYTEST_ARGS) \
		|| { code=$$?; [ $$code -eq 5 ] || status=$$code; }; \
	$(BIN)/pytest -n $(SERIAL_WORKERS) --dist loadgroup -m serial $(PYTEST_ARGS) \
		|| { code=$$?; [ $$code -eq 5 ] || [ $$status -ne 0 ] || status=$$code; }; \
	exit $$status

# Ruff on every commit (.pre-commit-config.yaml; it runs this virtualenv's ruff, offline).
hooks: venv
	$(BIN)/pre-commit install

bench: venv
	$(BIN)/python -m benchmarks

# schemathesis against `claude-jobs dev` (started and stopped here): every check, every phase
# (stateful included), for FUZZ_SECONDS. Non-zero on any failure.
FUZZ_SECONDS ?= 120
fuzz: venv
	$(BIN)/python -m claude_jobs_tools.fuzz --max-time $(FUZZ_SECONDS)

openapi: venv
	$(BIN)/python -m claude_jobs_tools.openapi > openapi.json

# The client's typed job options, generated from claude_jobs.job_options (the client installs
# without claude_jobs: clients/python).
client-options: venv
	$(BIN)/python -m claude_jobs_tools.client_options

# The CDK CLI (npm aws-cdk) is installed into infra/node_modules from the committed lockfile.
# No AWS account is needed to synthesize: instance-metadata lookups and CLI telemetry are off.
CDK_CLI := infra/node_modules/.bin/cdk
CDK_ENV := AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_CLI_TELEMETRY=1
CDK_ARGS ?=

$(CDK_CLI): infra/package.json infra/package-lock.json | venv
	cd infra && $(BIN)/npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: venv $(CDK_CLI)
	cd infra && $(CDK_ENV) ./node_modules/.bin/cdk synth --quiet --no-notices $(CDK_ARGS)

# The pinned, hashed requirements of what ships, derived from pyproject.toml at the versions of
# requirements/dev.lock: the layer's (runtime dependencies, arm64 Python 3.14, without what the
# Lambda runtime provides) and the worker image's (runtime + the `worker` extra).
layer-lock: venv
	$(BIN)/python -m infra.packaging lock layer

worker-lock: venv
	$(BIN)/python -m infra.packaging lock worker

deploy: venv $(CDK_CLI)
	cd infra && CDK_DISABLE_CLI_TELEMETRY=1 ./node_modules/.bin/cdk deploy --all --no-notices \
		--require-approval broadening $(CDK_ARGS)

clean:
	rm -rf $(VENV) infra/cdk.out infra/.build infra/node_modules .pytest_cache .mypy_cache .ruff_cache

# The capacity ledger (benchmarks/bench_capacity.py): units, rates and cost, before / after.
bench-capacity: venv
	$(BIN)/python -m benchmarks capacity

# The reliability ledger (benchmarks/bench_reliability.py): 300 jobs of 3 tenants through the
# local stack while faults are injected; exits non-zero when a check fails. Vary it with ARGS,
# e.g. make bench-reliability ARGS="--jobs 60 --seed 2 --aws-fault-rate 0.2".
bench-reliability: venv
	$(BIN)/python -m benchmarks.bench_reliability $(ARGS)
