# robustness-gate: `make demo` shows the main job end to end, `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all deps venv lint typecheck crds crds-check unit integration test demo clean

all: test

deps:
	@bash hack/install-deps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check operator tests hack
	$(BIN)/mypy operator/robustness_gate hack/promlab.py hack/fakeservice.py

crds: venv
	$(BIN)/robustness-gate crds

crds-check: venv
	$(BIN)/robustness-gate crds --check

unit: venv
	$(BIN)/python -m pytest tests/unit -q

integration: venv deps
	$(BIN)/python -m pytest tests/integration -q

test: deps venv lint crds-check
	$(BIN)/python -m pytest tests/unit tests/integration -q

demo: deps venv
	$(BIN)/python hack/demo.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
