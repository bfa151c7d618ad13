# Set-up for a fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Each target creates .venv with Python >= 3.12 and installs what it needs.

PYTHON ?= $(shell for p in python3.12 python3.13 python3.14 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint typecheck format bench clean check-python

check-python:
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (python3.12 not found)"; exit 1; }

$(VENV)/.stamp-%: pyproject.toml | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$*]'
	@touch $@

demo: $(VENV)/.stamp-demo
	$(PY) -m virtualizarr.demo

test: $(VENV)/.stamp-test
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-fast: $(VENV)/.stamp-test
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.stamp-test
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

typecheck: $(VENV)/.stamp-test
	$(PY) -m mypy

format: $(VENV)/.stamp-test
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

bench: $(VENV)/.stamp-test
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo_output
