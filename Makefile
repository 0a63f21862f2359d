# Two commands: `make run` (set up + start everything in the foreground) and `make test`.
# Both are idempotent: the virtual environment comes from the committed uv.lock.
SHELL := /bin/bash
UV_VERSION ?= 0.13.8
VENV := .venv
PY := $(VENV)/bin/python
# where uv is installed when the system Python refuses pip (PEP 668, e.g. Debian/Ubuntu)
BOOTSTRAP ?= .data/.bootstrap
export UV_PYTHON_DOWNLOADS := never
export LITELLM_LOCAL_MODEL_COST_MAP := True
export DAGSTER_DISABLE_TELEMETRY := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install setup run test lint bench clean uv

install: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@$$($(MAKE) -s --no-print-directory uv) sync --frozen --python python3.11
	@touch $@

# prints the command that runs uv, installing it first if needed: python3 -m uv, else pip, else
# (externally managed Python) a small venv in $(BOOTSTRAP), else pip --user --break-system-packages
uv:
	@if python3 -m uv --version >/dev/null 2>&1; then echo "python3 -m uv"; \
	elif [ -x "$(BOOTSTRAP)/bin/uv" ]; then echo "$(BOOTSTRAP)/bin/uv"; \
	elif python3 -m pip install --quiet "uv==$(UV_VERSION)" >&2 2>/dev/null; then echo "python3 -m uv"; \
	elif python3 -m venv "$(BOOTSTRAP)" >&2 && "$(BOOTSTRAP)/bin/python" -m pip install --quiet "uv==$(UV_VERSION)" >&2; \
	then echo "$(BOOTSTRAP)/bin/uv"; \
	elif python3 -m pip install --quiet --user --break-system-packages "uv==$(UV_VERSION)" >&2; then echo "python3 -m uv"; \
	else echo "cannot install uv: install it (https://docs.astral.sh/uv/) and run make again" >&2; exit 1; fi

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
	rm -rf .data dbt_project/target dbt_project/logs dbt_project/generated
