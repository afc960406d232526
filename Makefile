# newsbot — the commands a newcomer needs. `make run` and `make test` set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test check fmt bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: set up and run the bot on its defaults (SQLite in data/, console chat, articles/)
run: $(VENV)/.installed
	$(BIN)/newsbot run

## test: set up and run the test suite
test: $(VENV)/.installed
	$(BIN)/python -m pytest

## check: lint, format check and type check
check: $(VENV)/.installed
	$(BIN)/ruff check bot tests benchmarks
	$(BIN)/ruff format --check bot tests benchmarks
	$(BIN)/mypy

## fmt: format the code
fmt: $(VENV)/.installed
	$(BIN)/ruff check --fix bot tests benchmarks
	$(BIN)/ruff format bot tests benchmarks

## bench: run every benchmark; fails only on a missed target, naming it (need ../shared)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
