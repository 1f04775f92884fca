PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup test test-fast lint bench demo

## setup: create .venv and install fasdl with its dev tools (and redis-server/weed checks)
setup:
	bash scripts/setup.sh

## test: the whole suite (unit + integration, SeaweedFS started by the tests)
test:
	$(BIN)/pytest -q

## test-fast: unit tests only
test-fast:
	$(BIN)/pytest -q tests/unit

lint:
	$(BIN)/ruff check fasdl tests benchmarks
	$(BIN)/mypy

bench:
	$(BIN)/python benchmarks/platform_cpu.py
	$(BIN)/python benchmarks/store_throughput.py
	$(BIN)/python benchmarks/comm.py

demo:
	$(BIN)/fasdl demo
