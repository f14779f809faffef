# One-command set-up: every target creates .venv and installs what it needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench ui ui-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[pipeline,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/routing demo

# Lint and type-check first (seconds), so a slip fails before the suite starts; the suite runs
# on two workers (pytest-xdist), ~9 minutes on 2 cores instead of ~14 serially.
test: lint
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy routing_runtime

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

ui: $(STAMP)
	$(BIN)/routing ui --home $(or $(HOME_DIR),.routing-demo)

ui-check: $(STAMP)
	$(BIN)/python scripts/check_ui.py

clean:
	rm -rf $(VENV) .routing .routing-demo
