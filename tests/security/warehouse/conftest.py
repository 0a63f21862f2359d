"""The security suite runs against a real warehouse process of its own (the same fixtures as
tests/warehouse) and, for the supervisor and the logs, against real stacks."""

from __future__ import annotations

from tests.warehouse.conftest import client, database, http, warehouse_process, warehouse_url

__all__ = ["client", "database", "http", "warehouse_process", "warehouse_url"]
