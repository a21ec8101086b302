# The two commands for a fresh machine: `make run` and `make test`.
# Each first runs scripts/bootstrap.sh (the Debian packages it needs, and PostgreSQL for the tests),
# then creates .venv with the pinned dependencies (constraints.txt) when needed: the runtime and the
# sandbox for `make run`, plus the dev tools for `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt
RUNTIME_EXTRAS := sandbox
DEV_EXTRAS := dev,sandbox
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp
PYTEST_ARGS ?=

.PHONY: run test venv protos lint bench lock clean

# $(call install,EXTRAS): the venv (created when missing) with the project and those extras.
define install
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) pip
	$(PIP) -e '.[$(1)]'
endef

$(RUNTIME_STAMP): pyproject.toml constraints.txt
	$(call install,$(RUNTIME_EXTRAS))
	@touch $@

# A dev install includes the runtime one, so it refreshes both stamps.
$(DEV_STAMP): pyproject.toml constraints.txt
	$(call install,$(DEV_EXTRAS))
	@touch $(RUNTIME_STAMP) $@

venv: $(DEV_STAMP)

# Targets that bootstrap run it first, as its own step, since creating the venv may need python3-venv.

## The whole system on embedded defaults (NATS, SQLite, sandbox cluster when no kubeconfig).
run:
	bash scripts/bootstrap.sh run
	@$(MAKE) --no-print-directory $(RUNTIME_STAMP)
	$(BIN)/python -m conveyor_launcher

## Lint, then the full suite: unit, integration (real servers), end-to-end (every process).
test:
	bash scripts/bootstrap.sh test
	@$(MAKE) --no-print-directory $(DEV_STAMP)
	bash scripts/lint.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Regenerate src/conveyor/v1 from protos/ with the pinned grpcio-tools.
protos: venv
	$(BIN)/python scripts/gen_protos.py

## ruff (check and format), import-linter, mypy, buf lint/breaking.
lint:
	bash scripts/bootstrap.sh lint
	@$(MAKE) --no-print-directory $(DEV_STAMP)
	bash scripts/lint.sh

## Benchmarks against real processes; prints figures, asserts nothing.
bench: venv
	$(BIN)/python -m bench

## Re-pin every dependency to what is installed in .venv.
lock: venv
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache
