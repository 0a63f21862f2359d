"""Security tests run against the same real API server fixtures as tests/api (uvicorn + PostgreSQL).

The fixtures are tests/api/conftest.py's, loaded under another module name so this folder can run
alone (`pytest tests/security`) or beside tests/api.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

API_TESTS = Path(__file__).resolve().parents[1] / "api"
if str(API_TESTS) not in sys.path:
    sys.path.insert(0, str(API_TESTS))

_spec = importlib.util.spec_from_file_location("tests_api_fixtures", API_TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

api_database_url = _fixtures.api_database_url
api_server = _fixtures.api_server
start_api = _fixtures.start_api
client = _fixtures.client
admin_token = _fixtures.admin_token
make_user = _fixtures.make_user
base_env = _fixtures.base_env
