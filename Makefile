# agent-orders: `make run` and `make test` are the whole quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint check bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded PostgreSQL with the demo store.
run: $(STAMP)
	$(BIN)/agent-orders run

## Lint, format check, types, then the whole suite (one worker per CPU: each test has its own database).
test: lint
	$(BIN)/pytest -n auto

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build

## Benchmarks on their own throwaway databases (scale at 100,000 orders); a few minutes.
bench: $(STAMP)
	$(BIN)/python -m bench

## The same with the scale scenario at 1,000,000 orders.
bench-full: $(STAMP)
	$(BIN)/python -m bench --full
