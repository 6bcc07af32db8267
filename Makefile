# psymon: every target makes its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.psymon-installed
TOOLS_VENV  ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.psymon-tools-installed

.PHONY: help demo test lint typecheck imports unit integration bench reliability docs compose-check clean

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

# check-jsonschema validates docker-compose.yml (Compose Specification). It needs click >= 8.5
# and faust needs click < 8.4, so it gets a virtual environment of its own.
$(TOOLS_STAMP):
	@$(PYTHON) -m venv $(TOOLS_VENV) && \
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check "check-jsonschema==0.39.0" && \
	touch $(TOOLS_STAMP)

compose-check: $(TOOLS_STAMP)
	$(TOOLS_VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

# The browser tests drive Debian's Chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && apt-get install -y -qq chromium >/dev/null'

demo: $(STAMP)
	$(VENV)/bin/psymon demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	$(PY) -m schemas.jsonschema
	$(PY) -m services.reference_docs

unit: $(STAMP) $(TOOLS_STAMP)
	PSYMON_TOOLS_VENV=$(abspath $(TOOLS_VENV)) $(VENV)/bin/pytest -q -m "not integration" --ignore=tests/reliability

integration: $(STAMP)
	$(VENV)/bin/pytest -q -m integration

# The fault-injection suite (kills, outages, floods) runs on its own: make reliability.
test: lint typecheck imports $(TOOLS_STAMP) $(CHROMIUM)
	PSYMON_TOOLS_VENV=$(abspath $(TOOLS_VENV)) $(VENV)/bin/pytest -q --ignore=tests/reliability

reliability: $(STAMP)
	$(VENV)/bin/pytest -q tests/reliability -m reliability

bench: $(STAMP)
	@for script in bench/[!_]*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
