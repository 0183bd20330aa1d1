# tensorgate: `make run` and `make test` work on a fresh machine (they set themselves up).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REPO ?= models
PYTEST_ARGS ?=

.PHONY: run test lint format venv data protos clean-models

run: venv data
	$(PY) -m serving.stack --repo $(REPO)

test: venv data lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy training export serving loadtest deploy scripts

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

venv: $(STAMP)

# Re-installs when pyproject.toml changes; the stamp records a finished install only.
$(STAMP): pyproject.toml tests/requirements-v2-clients.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	$(PY) -m pip install --quiet --no-deps -r tests/requirements-v2-clients.txt
	@touch $(STAMP)

data:
	@bash scripts/ensure-data.sh

# Regenerate serving/protos/{tfserving,inference}.binpb after upgrading tensorflow-serving-api or tritonclient.
protos: venv
	$(PY) -m serving.protos.build
