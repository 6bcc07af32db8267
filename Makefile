# psymon: every target makes its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.psymon-installed

.PHONY: help demo test lint typecheck imports unit integration bench reliability schemas clean

help:
	@echo "make demo   run psymon on the embedded default (broker + PostgreSQL + workers + web views)"
	@echo "make test   the whole suite: ruff, mypy, import contracts, pytest (unit, integration, doctests)"
	@echo "make bench  benchmarks, printed as ratios against baselines measured in the same run"

$(STAMP): pyproject.toml
	@start=$$(date +%s); \
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "psymon needs Python >= 3.11, found " + sys.version' && \
	$(PYTHON) -m venv $(VENV) && \
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip && \
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]" && \
	touch $(STAMP) && \
	echo "psymon: installed into $(VENV) in $$(( $$(date +%s) - start )) s"

demo: $(STAMP)
	$(VENV)/bin/psymon demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

schemas: $(STAMP)
	$(PY) -m schemas.jsonschema

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration"

integration: $(STAMP)
	$(VENV)/bin/pytest -q -m integration

test: lint typecheck imports
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
