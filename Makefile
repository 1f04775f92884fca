PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Installed by scripts/setup.sh, which touches it last: the targets below that need the
# environment depend on it, so it is set up when missing or older than what it was built from.
READY  := $(BIN)/fasdl

.PHONY: setup test test-fast lint bench demo constraints

## demo: a complete small K-Reduce job (sets up .venv first if needed)
demo: $(READY)
	$(BIN)/fasdl demo

## test: the whole suite (unit + integration, SeaweedFS started by the tests)
test: $(READY)
	$(BIN)/pytest -q

## test-fast: unit tests only
test-fast: $(READY)
	$(BIN)/pytest -q tests/unit

## lint: formatting, lint rules and types
lint: $(READY)
	$(BIN)/ruff format --check fasdl tests benchmarks scripts
	$(BIN)/ruff check fasdl tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(READY)
	$(BIN)/python benchmarks/platform_cpu.py
	$(BIN)/python benchmarks/store_throughput.py
	$(BIN)/python benchmarks/comm.py
	$(BIN)/python benchmarks/allocator.py
	$(BIN)/python benchmarks/startup.py

## setup: create or update .venv with fasdl and its dev tools, pinned by constraints.txt
setup:
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh

$(READY): pyproject.toml constraints.txt scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh

## constraints: rewrite constraints.txt from a fresh install (then `make setup` and test)
constraints:
	PYTHON=$(PYTHON) bash scripts/constraints.sh
