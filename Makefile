# modelfleet: the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for the test targets (0: one process). Each test module is one unit of work (see
# tests/conftest.py). Two workers on a 2-core machine: four were tried and thrashed (four fleets provisioning at
# once; docs/benchmarks.md, "The test suite").
# PYTEST_ARGS can add e.g. --durations=40.
TEST_WORKERS ?= 2
# A worker that dies (killed, crashed) ends the run with an error instead of being replaced: with --dist loadgroup
# a replacement never got the rest of the dead worker's unit, and the run waited with both workers idle.
XDIST := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --max-worker-restart=0

.PHONY: run test test-unit test-integration check lint bench deps system-deps clean help

help:
	@echo "make run     seed the demo registry, start the simulated fleet, open the console"
	@echo "make test    run the whole test suite (unit, integration on the simulated fleet, console)"
	@echo "make check   ruff + mypy + import-linter (the layers of docs/architecture.md)"
	@echo "make lint    ansible-lint --profile production, terraform fmt -check and validate"
	@echo "make bench   benchmarks (figures go to docs/benchmarks.md)"

$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "modelfleet needs Python 3.11 or newer; fix: install python3.11 and run make PYTHON=python3.11")'
	@test -x $(BIN)/python || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@$(PYTHON) scripts/pip_progress.py --log $(VENV)/pip-install.log --what "pinned Python packages (MLflow, Ansible, Textual, ...)" -- \
		$(BIN)/python -m pip install --disable-pip-version-check --require-hashes -r requirements/dev.txt
	@$(PYTHON) scripts/pip_progress.py --log $(VENV)/pip-install-modelfleet.log --what "modelfleet itself (editable)" -- \
		$(BIN)/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

deps: $(STAMP)

system-deps-%:
	@scripts/system-deps.sh $*

# Each step is idempotent and none undoes the operator's work: a second `make run` reuses the seeded registry and
# the running fleet, provisions only if the ledger lacks a successful provisioning of every node, deploys the
# champion only to nodes that never had the model (a node moved to another version keeps it), and opens the
# console on the fleet as it is. Gentle demo traffic keeps running beside the fleet (a drift injected on
# edge-cpu-01: income +25%) until `modelfleet sim down`.
run: system-deps-run deps
	$(BIN)/modelfleet demo seed
	$(BIN)/modelfleet sim up
	$(BIN)/modelfleet provision --if-needed --yes
	$(BIN)/modelfleet deploy credit-risk@champion --skip-deployed --yes
	$(BIN)/modelfleet demo traffic --background --shift 'edge-cpu-01:income=+25%'
	$(BIN)/modelfleet

test: system-deps-test deps
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-unit: deps
	$(BIN)/python -m pytest $(XDIST) -m "not integration" $(PYTEST_ARGS)

test-integration: system-deps-test deps
	$(BIN)/python -m pytest $(XDIST) -m integration $(PYTEST_ARGS)

check: deps
	$(BIN)/ruff check tui tests bench plugins
	$(BIN)/mypy
	$(BIN)/lint-imports

lint: deps
	$(BIN)/ansible-lint --profile production playbooks roles
	scripts/terraform-check.sh

bench: system-deps-bench deps
	$(BIN)/python -m bench

clean:
	-$(BIN)/modelfleet sim down 2>/dev/null
	rm -rf .modelfleet
