# Quick start: `make demo` (the main job on the built-in data) and `make test`.
# Each target creates .venv and installs the project into it when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: demo test lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

# every run gets its own folder; demo_out/latest points at the newest
demo: $(STAMP)
	@run=demo_out/$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/ssgrl demo --out $$run && ln -sfn $$(basename $$run) demo_out/latest

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src/ssgrl

check: test lint typecheck

# every benchmark, one table (benchmarks/results/latest.md); BENCH_ARGS="--quick" or "--device cuda"
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
