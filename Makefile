# Two commands: `make run` (set up + start everything in the foreground) and `make test`.
# Both are idempotent: the virtual environment comes from the committed uv.lock.
SHELL := /bin/bash
UV_VERSION ?= 0.13.8
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export LITELLM_LOCAL_MODEL_COST_MAP := True
export DAGSTER_DISABLE_TELEMETRY := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install setup run test lint bench clean

install: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	python3 -m uv sync --frozen --python python3.11
	@touch $@

setup: install
	$(PY) -m orchestration.stack setup

run: install
	$(PY) -m orchestration.stack run

# tests get their own ports and data folder by default, so they run beside a `make run` stack
test: export API_PORT ?= 18000
test: export DAGSTER_PORT ?= 13000
test: export CLICKHOUSE_HTTP_PORT ?= 18123
test: export AETL_DATA_DIR ?= $(CURDIR)/.data/test
test: install
	AETL_ENV=test $(PY) -m orchestration.stack setup
	AETL_ENV=test $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check api orchestration tests benchmarks
	$(VENV)/bin/mypy api orchestration

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .data dbt_project/target dbt_project/logs
