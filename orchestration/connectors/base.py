"""What every connector answers: a connection test, its tables, a table's schema.

Failures are `ConnectorFailure` with the step that failed and a reason a person can act on (DNS,
refused, timeout, auth, database missing, table missing); no message ever carries a credential.
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# the longest a connection test may take end to end, whatever the network does
TEST_BUDGET_SECONDS = 4.5
TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-/ *?\[\]]{1,512}$")
_dns_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")


class ConnectorFailure(Exception):
    """A connector that cannot do what was asked; `reason` is one of the REASONS."""

    REASONS = (
        "dns", "refused", "timeout", "auth", "database_missing", "table_missing", "path", "query", "unknown"
    )  # fmt: skip

    def __init__(self, reason: str, message: str, *, step: str = "connect") -> None:
        self.reason = reason
        self.step = step
        self.message = message
        super().__init__(message)


class InvalidTableName(ValueError):
    """A table name that is not `table` or `schema.table` of plain identifiers (e.g. SQL)."""


@dataclass
class ColumnInfo:
    name: str
    type: str  # the source's own type name
    clickhouse_type: str
    nullable: bool | None = None  # None: as the ClickHouse type says
    primary_key: bool = False
    default: str | None = None

    def __post_init__(self) -> None:
        if self.nullable is None:
            self.nullable = self.clickhouse_type.startswith("Nullable(")


@dataclass
class IndexInfo:
    name: str
    columns: list[str]
    unique: bool = False
    primary: bool = False


@dataclass
class TableSchema:
    table_name: str
    columns: list[ColumnInfo]
    primary_key: list[str] = field(default_factory=list)
    indexes: list[IndexInfo] = field(default_factory=list)
    row_count: int | None = None
    row_count_exact: bool = False
    row_count_method: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TableRef:
    name: str
    schema: str | None = None
    kind: str = "table"
    row_count: int | None = None
    row_count_exact: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TestReport:
    latency_ms: float
    details: dict[str, Any]
    server_version: str | None = None


def check_table_name(name: str) -> tuple[str | None, str]:
    """(schema, table) of a safe name; anything else is refused before it reaches a query."""
    if not TABLE_NAME_PATTERN.match(name or ""):
        raise InvalidTableName("table name must be `table` or `schema.table` of letters, digits and _")
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def probe_tcp(host: str, port: int, timeout: float) -> dict[str, Any]:
    """Resolve and open a TCP connection within `timeout`; says which of the two failed."""
    started = time.monotonic()
    future = _dns_pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        addresses = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise ConnectorFailure("dns", f"DNS lookup of {host} timed out", step="dns") from None
    except socket.gaierror as error:
        raise ConnectorFailure(
            "dns", f"host {host} could not be resolved (DNS: {error.strerror})", step="dns"
        ) from None
    last: OSError | None = None
    for family, kind, proto, _, address in addresses:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            break
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(remaining)
            try:
                sock.connect(address)
                return {"dns_resolved": True, "connection_established": True}
            except TimeoutError:
                raise ConnectorFailure(
                    "timeout", f"connection to {host}:{port} timed out after {timeout:.1f} s", step="connect"
                ) from None
            except ConnectionRefusedError as error:
                last = error
            except OSError as error:
                last = error
    if isinstance(last, ConnectionRefusedError):
        raise ConnectorFailure("refused", f"connection to {host}:{port} refused (nothing listens there)")
    if last is None:
        raise ConnectorFailure("timeout", f"connection to {host}:{port} timed out after {timeout:.1f} s")
    raise ConnectorFailure("refused", f"cannot connect to {host}:{port}: {last.strerror or 'network error'}")


def remaining_budget(started: float, budget: float = TEST_BUDGET_SECONDS) -> float:
    return max(0.5, budget - (time.monotonic() - started))
