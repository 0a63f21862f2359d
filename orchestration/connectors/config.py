"""Typed connector configurations: one pydantic model per connector type.

Importable without Dagster (the API validates and tests connectors with them). A configuration is
stored in two parts: the public part (JSON in the metadata DB) and the secret fields (encrypted at
rest); `split_secrets` and `connector_from_stored` convert between the two.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, TypeAdapter, ValidationError

MASK = "********"

# a hostname (RFC 1123 labels) or an IPv4/IPv6 address; nothing else fits in a host field
Host = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$")
]
Port = Annotated[int, Field(ge=1, le=65535)]
DatabaseName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_$-]+$")
]
UserName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00\r\n]+$")]
Password = Annotated[SecretStr, Field(max_length=1024)]
Seconds = Annotated[int, Field(ge=1, le=60)]


class ConnectorType(StrEnum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    CLICKHOUSE = "clickhouse"
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    PARQUET = "parquet"
    EXCEL = "excel"


FILE_TYPES = frozenset({"csv", "tsv", "jsonl", "parquet", "excel"})
# spellings people use for the same types
TYPE_ALIASES = {
    "postgres": "postgresql",
    "mariadb": "mysql",
    "xlsx": "excel",
    "ndjson": "jsonl",
    "json": "jsonl",
}


class ConnectorConfigError(ValueError):
    """A configuration that cannot describe a connection; `field` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)

    @property
    def is_file(self) -> bool:
        return False

    def describe(self) -> str:
        """Where it points, for messages and logs (never a credential)."""
        return str(self.model_dump(exclude=set(self.SECRET_FIELDS)))


class PostgresConfig(_Config):
    type: Literal["postgresql"] = "postgresql"
    host: Host
    port: Port = 5432
    database: DatabaseName
    username: UserName
    password: Password | None = None
    schema_name: DatabaseName = Field(default="public", description="Default schema of unqualified tables")
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout: Seconds = 5

    def describe(self) -> str:
        return f"postgresql://{self.username}@{self.host}:{self.port}/{self.database}"


class MySQLConfig(_Config):
    type: Literal["mysql"] = "mysql"
    host: Host
    port: Port = 3306
    database: DatabaseName
    username: UserName
    password: Password | None = None
    ssl: bool = False
    connect_timeout: Seconds = 5

    def describe(self) -> str:
        return f"mysql://{self.username}@{self.host}:{self.port}/{self.database}"


class ClickHouseConfig(_Config):
    """Without host: the platform's own warehouse (its URL and password come from the settings)."""

    type: Literal["clickhouse"] = "clickhouse"
    host: Host | None = None
    port: Port | None = None
    database: DatabaseName = "default"
    username: UserName | None = None
    password: Password | None = None
    secure: bool = False
    connect_timeout: Seconds = 5

    @property
    def is_platform_warehouse(self) -> bool:
        return self.host is None

    def describe(self) -> str:
        if self.host is None:
            return f"the platform's warehouse (database {self.database})"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username or 'default'}@{self.host}:{self.http_port}/{self.database}"

    @property
    def http_port(self) -> int:
        return self.port or (8443 if self.secure else 8123)


class FileConfig(_Config):
    """Files under a configured root (AETL_FILE_ROOTS); `path` is a folder or a file below it."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    type: Literal["csv", "tsv", "jsonl", "parquet", "excel"]
    path: str = Field(default="", max_length=1024, description="Folder or file relative to the root")
    compression: Literal["auto", "gzip", "none"] = "auto"
    delimiter: str | None = Field(default=None, min_length=1, max_length=1, description="csv only")
    header: bool = True
    sheet: str | None = Field(default=None, max_length=31, description="excel: sheet name (default: first)")

    @property
    def is_file(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.type} files under {self.path or '.'}"


ConnectorConfig = Annotated[
    PostgresConfig | MySQLConfig | ClickHouseConfig | FileConfig, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[ConnectorConfig] = TypeAdapter(ConnectorConfig)


def normalize_type(value: str) -> str:
    lowered = value.strip().lower()
    return TYPE_ALIASES.get(lowered, lowered)


def parse_connector_config(
    connector_type: str, config: dict[str, Any] | None, credentials: dict[str, Any] | None = None
) -> ConnectorConfig:
    """Validate a connector's settings; credentials may come separately (ai-etl) or inside config."""
    kind = normalize_type(connector_type)
    if kind not in {t.value for t in ConnectorType}:
        raise ConnectorConfigError(
            "type", f"unknown connector type {connector_type[:64]!r}; one of {', '.join(ConnectorType)}"
        )
    merged: dict[str, Any] = dict(config or {})
    merged.pop("type", None)
    for key, value in (credentials or {}).items():
        if key in merged and merged[key] != value:
            raise ConnectorConfigError(f"credentials.{key}", "given twice (in config and credentials)")
        merged[key] = value
    if "user" in merged and "username" not in merged:
        merged["username"] = merged.pop("user")
    if "schema" in merged and "schema_name" not in merged and kind == "postgresql":
        merged["schema_name"] = merged.pop("schema")
    if "sslmode" in merged and "ssl_mode" not in merged:
        merged["ssl_mode"] = merged.pop("sslmode")
    if kind in FILE_TYPES:
        _check_relative_path(str(merged.get("path", "")))
    try:
        return _ADAPTER.validate_python({**merged, "type": kind})
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(p) for p in first["loc"] if str(p) != kind]
        section = "credentials" if credentials and loc and loc[0] in credentials else "config"
        field = ".".join([section, *loc]) if loc else section
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown setting for a {kind} connector"
        raise ConnectorConfigError(field, message) from None


def _check_relative_path(path: str) -> None:
    if "\x00" in path or any(part == ".." for part in re.split(r"[\\/]", path)):
        raise ConnectorConfigError("config.path", "path may not contain '..' or NUL")


def split_secrets(config: ConnectorConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """(public settings for the JSON column, secret values to encrypt)."""
    public = config.model_dump(mode="json", exclude=set(config.SECRET_FIELDS))
    secrets: dict[str, str] = {}
    for name in config.SECRET_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, SecretStr):
            secrets[name] = value.get_secret_value()
    return public, secrets


def masked(config: ConnectorConfig) -> dict[str, Any]:
    """What responses show: public settings, every secret present as "********"."""
    public, secrets = split_secrets(config)
    public.pop("type", None)
    return {**public, **dict.fromkeys(secrets, MASK)}


def connector_from_stored(
    connector_type: str, public: dict[str, Any], secrets: dict[str, str]
) -> ConnectorConfig:
    return _ADAPTER.validate_python({**public, **secrets, "type": connector_type})


def file_roots() -> list[Path]:
    from api.core.config import get_settings  # the one settings object (AETL_FILE_ROOTS)

    return get_settings().file_roots


def warehouse_file_roots() -> list[Path]:
    """Folders the warehouse's file() may read (AETL_WAREHOUSE_FILE_ROOTS, default: the imports folder)."""
    configured = os.environ.get("AETL_WAREHOUSE_FILE_ROOTS")
    if configured:
        return [Path(p).resolve() for p in configured.split(":") if p]
    return [r for r in file_roots() if r.name == "imports"] or file_roots()[:1]


class PathOutsideRoot(ConnectorConfigError):
    pass


def resolve_file_path(config: FileConfig, relative: str = "", roots: list[Path] | None = None) -> Path:
    """The absolute path of `relative` below the connector's folder, refused when it leaves the roots.

    Symlinks are resolved before the check, so a link pointing outside a root is refused too.
    """
    _check_relative_path(relative)
    roots = roots if roots is not None else file_roots()
    inside: list[Path] = []
    for root in roots:
        root_real = root.resolve()
        base = Path(config.path) if Path(config.path).is_absolute() else root_real / config.path
        real = (base / relative.lstrip("/")).resolve()
        if real == root_real or root_real in real.parents:
            inside.append(real)
    if not inside:
        raise PathOutsideRoot(
            "config.path",
            "path is outside the configured file roots (AETL_FILE_ROOTS), or leaves them via a symlink",
        )
    return next((p for p in inside if p.exists()), inside[0])


def expand_files(config: FileConfig, relative: str = "", roots: list[Path] | None = None) -> list[Path]:
    """The files a path or glob names, each checked against the roots after resolving symlinks."""
    roots = roots if roots is not None else file_roots()
    pattern = resolve_file_path(config, relative, roots)
    if not any(ch in str(pattern) for ch in "*?["):
        return [pattern] if pattern.is_file() else []
    anchor = Path(pattern.anchor)
    matches = sorted(anchor.glob(str(pattern.relative_to(anchor))))
    real_roots = [r.resolve() for r in roots]
    files = []
    for match in matches:
        real = match.resolve()
        if not any(real == r or r in real.parents for r in real_roots):
            raise PathOutsideRoot("path", f"{match.name} leaves the configured file roots via a symlink")
        if real.is_file():
            files.append(real)
    return files
