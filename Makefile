# remitnet — see README.md. Every target sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv protos lint typecheck buf test test-fast demo serve bench bench-quick chaos soak profile clean

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

protos: venv
	$(PY) scripts/gen_protos.py

buf:
	cd protos && npx --yes @bufbuild/buf lint

lint: venv buf
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	bash scripts/typecheck.sh

postgres:
	bash scripts/ensure_postgres.sh

test: venv lint postgres
	bash scripts/check_deploy.sh
	$(VENV)/bin/pytest -q

test-fast: venv
	$(VENV)/bin/pytest -q -x -m "not slow"

demo: venv
	$(PY) scripts/demo.py

serve: venv
	$(VENV)/bin/remitnet serve --insecure --db sqlite:///remitnet.db

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache remitnet.db*

bench: venv postgres
	$(PY) scripts/bench.py --profile full

bench-quick: venv postgres
	$(PY) scripts/bench.py --profile quick

CHAOS_SECONDS ?= 120
SOAK_SECONDS ?= 600

chaos: venv postgres
	$(PY) scripts/chaos.py --seconds $(CHAOS_SECONDS)

soak: venv postgres
	$(PY) scripts/soak.py --seconds $(SOAK_SECONDS)

profile: venv postgres
	$(PY) scripts/profile_hub.py
