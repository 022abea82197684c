# The two set-up commands: `make run` (serve the demo) and `make test` (the whole suite).
#   make run PORT=8777 JUPYTER_PORT=8889     other ports for f2git and the demo's JupyterLab
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/demo.toml
CHP    := .cache/chp/node_modules/.bin/configurable-http-proxy
PORT ?=
JUPYTER_PORT ?= 8888

.PHONY: run test bench docs system-deps test-system-deps test-deps dist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Installed again when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[docs]'
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

# f2git serving the demo course, and a local JupyterLab (nbgitpuller, no hub) to click its link in
run: system-deps $(VENV)/.installed
	$(BIN)/python -m f2git.demo --config $(CONFIG) $(if $(PORT),--port $(PORT)) --jupyter-port $(JUPYTER_PORT)

test: test-deps
	$(BIN)/python -m pytest

# dist/f2git-<version>.tar.gz and dist/f2git-<version>-py3-none-any.whl
dist: | $(BIN)/python
	$(BIN)/python -m pip install -q build
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

# The documentation site in docs/_build/html; warnings (a broken link between pages, a page in
# no table of contents) are errors.
docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

bench: test-deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .cache var dist build docs/_build
