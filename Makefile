# The two commands for a fresh machine: `make run` and `make test`.
# Both create .venv and install the pinned dependencies (constraints.txt) when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test venv protos lint bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## The whole system on embedded defaults (NATS, SQLite, sandbox cluster when no kubeconfig).
run: venv
	$(BIN)/python -m conveyor.launcher

## The full suite: unit, integration (real servers), end-to-end (every process).
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Regenerate src/conveyor/v1 from protos/ with the pinned grpcio-tools.
protos: venv
	$(BIN)/python scripts/gen_protos.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Benchmarks against real processes; prints figures, asserts nothing.
bench: venv
	$(BIN)/python -m bench

## Re-pin every dependency to what is installed in .venv.
lock: venv
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache
