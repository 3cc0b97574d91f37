# Quickstart: `make run` (local mode, embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench chaos clean

# Installing says one line; pip's own output (e.g. setuptools' notice about editable installs)
# goes to .venv/install.log and is shown only when the install fails.
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
LOGGED = >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required" or 0)'
	@echo "Creating $(VENV) (first run only)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip $(LOGGED)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "Installing Smiling Steps into $(VENV) (a minute or two on first run; log: $(VENV)/install.log)"
	@$(PIP) -e . $(LOGGED)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "Installing Smiling Steps with its test tools into $(VENV) (log: $(VENV)/install.log)"
	@$(PIP) -e '.[dev]' $(LOGGED)
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@$(BIN)/smiling-steps serve

# ruff, then mypy (its files and strictness are in pyproject.toml's [tool.mypy]).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q --durations=25

bench: $(VENV)/.installed-dev
	@for b in bench/*.py; do [ -e "$$b" ] && $(BIN)/python "$$b"; done; true

# The chaos run (bench/chaos.py, docs/reliability.md): `make chaos ARGS="--seed 7 --bookings 200"`.
chaos: $(VENV)/.installed-dev
	$(BIN)/python -m bench chaos $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
