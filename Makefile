# Quickstart: `make run` (local mode, embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

# Installing is quiet (one line saying what happens); pip speaks only when something fails.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required" or 0)'
	@echo "Creating $(VENV) (first run only)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "Installing Smiling Steps into $(VENV) (a minute on first run)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@$(BIN)/smiling-steps serve

# ruff, then mypy (its files and strictness are in pyproject.toml's [tool.mypy]).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-dev
	@for b in bench/*.py; do [ -e "$$b" ] && $(BIN)/python "$$b"; done; true

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
