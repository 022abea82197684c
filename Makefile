# The two set-up commands: `make run` (serve the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/demo.toml
CHP    := .cache/chp/node_modules/.bin/configurable-http-proxy

.PHONY: run test bench system-deps test-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Installed again when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

system-deps:
	./scripts/system-deps.sh

test-system-deps:
	./scripts/system-deps.sh --test

$(CHP):
	npm install --silent --no-audit --no-fund --prefix .cache/chp configurable-http-proxy@5

test-deps: test-system-deps $(VENV)/.installed-test $(CHP)

run: system-deps $(VENV)/.installed
	$(BIN)/f2git --config $(CONFIG) serve

test: test-deps
	$(BIN)/python -m pytest

bench: test-deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .cache var
