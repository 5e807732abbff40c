# Two commands on a fresh machine (Python >= 3.10 with venv):
#   make run    set up .venv with the app and run the main job (scan the bundled samples)
#   make test   set up .venv with the dev + train extras and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
OUT ?= scan-results

.PHONY: run gui test lint bench build frozen-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.app-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev,train]"
	touch $@ $(VENV)/.app-installed

run: $(VENV)/.app-installed
	$(BIN)/cxr-screener scan assets/samples --out $(OUT) --overwrite --report $(OUT)/report.pdf

# Checks Qt's system libraries first (Linux): names what is missing and the exact apt-get line.
gui: $(VENV)/.app-installed
	$(BIN)/python -m desktop.core.qt_system
	$(BIN)/cxr-screener gui

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check desktop model_training tests benchmarks scripts installer
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/run_all.py

build:
	$(PYTHON) scripts/build_bundle.py

frozen-test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m frozen tests/test_frozen.py

clean:
	rm -rf build dist $(OUT) .pytest_cache .mypy_cache .ruff_cache
