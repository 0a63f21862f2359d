"""The pipeline document: what a pipeline reads, how it transforms, where it loads, when it runs.

Every way to describe a pipeline (the ai-etl spec's `sources/transformations/targets`, the aggregator
spec's `source_config/transformation_config/destination_config`, later AI generation) ends as this one
validated document; the API stores it as immutable versions and the `aetl_pipelines` code location
builds Dagster definitions from it. Credentials never live here: a source or target that needs them
names a stored connector (`connector_id`), and the run reads the connector from the metadata DB.

How the parts refer to each other:
- each source is staged under its `id`; SQL transformations read sources and earlier
  transformations by id (`SELECT day, sum(amount) FROM source_1 GROUP BY day`);
- a target loads its `input` (a source or transformation id), by default the last transformation,
  else the only source.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
# `schema.table` or `table`, each part a safe identifier
TableName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
]
MAX_SQL_CHARS = 100_000
MAX_CODE_CHARS = 100_000
MAX_DESCRIPTION_CHARS = 10_000

# the platform's own databases in the warehouse: a pipeline never writes there
RESERVED_DATABASES = frozenset({"system", "information_schema", "INFORMATION_SCHEMA"})
# tables the platform itself owns in the default database
RESERVED_TABLES = frozenset({"calendar_days"})
# keys of an inline `config` that would put credentials into the document
CREDENTIAL_KEYS = frozenset(
    {"password", "passwd", "secret", "token", "api_key", "access_key", "secret_key", "private_key"}
)


class DocumentError(ValueError):
    """A document that is well-formed JSON but not a valid pipeline; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class SourceType(StrEnum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    CLICKHOUSE = "clickhouse"
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    PARQUET = "parquet"
    EXCEL = "excel"


FILE_SOURCE_TYPES = frozenset(
    {SourceType.CSV, SourceType.TSV, SourceType.JSONL, SourceType.PARQUET, SourceType.EXCEL}
)


class TransformationType(StrEnum):
    SQL = "sql"
    PYTHON = "python"


class LoadMode(StrEnum):
    APPEND = "append"
    REPLACE = "replace"
    INCREMENTAL = "incremental"
    MERGE = "merge"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


def _lift_inline_config(data: Any, lifted: tuple[str, ...]) -> Any:
    """The ai-etl spec nests `table`, `database`, ... under `config`: lift them, refuse credentials."""
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return data
    data = dict(data)
    config = dict(data.pop("config"))
    leaked = sorted(k for k in config if k.lower() in CREDENTIAL_KEYS or k.lower() in {"user", "username"})
    if leaked:
        raise ValueError(
            f"credentials ({', '.join(leaked)}) do not belong in a pipeline: store them in a connector "
            "(POST /api/v1/connectors) and reference it by connector_id"
        )
    # host/port describe where a connector points; the connector is the one place that says so
    for key in ("host", "port"):
        config.pop(key, None)
    for key in lifted:
        if key in config and data.get(key) is None:
            data[key] = config.pop(key)
    data["options"] = {**config, **(data.get("options") or {})}
    return data


class Source(_Strict):
    """One relation read by the pipeline, staged under `id`."""

    id: Identifier = "source_1"
    type: SourceType | None = Field(
        default=None, description="Filled from the connector when connector_id is given"
    )
    connector_id: str | None = Field(
        default=None,
        max_length=64,
        description="A stored connector; without one, `clickhouse` means the platform's own warehouse",
    )
    table: TableName | None = Field(default=None, description="`table` or `schema.table`")
    database: Identifier | None = Field(default=None, description="ClickHouse/MySQL database of `table`")
    query: str | None = Field(
        default=None, max_length=MAX_SQL_CHARS, description="A single SELECT run on the source"
    )
    path: str | None = Field(
        default=None, max_length=1024, description="File path (glob allowed) under the connector's root"
    )
    cursor_column: Identifier | None = Field(
        default=None, description="Incremental reads: only rows with a larger value than last time"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Format options (delimiter, header, sheet, compression, ...)"
    )

    @model_validator(mode="before")
    @classmethod
    def _inline_config(cls, data: Any) -> Any:
        return _lift_inline_config(
            data, ("connector_id", "table", "database", "query", "path", "cursor_column")
        )

    @model_validator(mode="after")
    def _what_to_read(self) -> Source:
        if self.type is None and self.connector_id is None:
            raise ValueError("a source needs a connector_id or a type")
        if self.type is not None and self.type is not SourceType.CLICKHOUSE and self.connector_id is None:
            raise ValueError(
                f"a {self.type.value} source needs a connector_id (credentials and roots live in connectors)"
            )
        is_file = self.type in FILE_SOURCE_TYPES
        if is_file and not self.path:
            raise ValueError("a file source needs a path")
        if not is_file and self.type is not None and not (self.table or self.query):
            raise ValueError("a database source needs a table or a query")
        if self.table and self.query:
            raise ValueError("give either table or query, not both")
        if self.path and ("\x00" in self.path or any(part == ".." for part in re.split(r"[\\/]", self.path))):
            raise ValueError("path may not contain '..' or NUL")
        return self


class Transformation(_Strict):
    """SQL runs in the warehouse on the staged data; Python (`def transform(df)`) in a sandboxed process."""

    id: Identifier = "transform_1"
    type: TransformationType = TransformationType.SQL
    sql: str | None = Field(default=None, max_length=MAX_SQL_CHARS)
    code: str | None = Field(default=None, max_length=MAX_CODE_CHARS)
    input: Identifier | None = Field(
        default=None, description="Python only: the relation passed as `df` (default: the previous step)"
    )

    @model_validator(mode="before")
    @classmethod
    def _sql_in_code(cls, data: Any) -> Any:
        # the specs write SQL as `code` too; keep one field per language
        if isinstance(data, dict) and data.get("type", "sql") == "sql" and data.get("sql") is None:
            data = dict(data)
            if "code" in data:
                data["sql"] = data.pop("code")
            elif "query" in data:
                data["sql"] = data.pop("query")
        return data

    @model_validator(mode="after")
    def _body(self) -> Transformation:
        if self.type is TransformationType.SQL:
            if not self.sql:
                raise ValueError("a sql transformation needs `sql` (one SELECT)")
            if self.code:
                raise ValueError("a sql transformation takes `sql`, not `code`")
        else:
            if not self.code:
                raise ValueError("a python transformation needs `code` defining transform(df)")
            if not re.search(r"^\s*def\s+transform\s*\(", self.code, re.MULTILINE):
                raise ValueError("python code must define `def transform(df)`")
        return self


class Target(_Strict):
    """A ClickHouse table that the pipeline loads; one Dagster asset per target."""

    id: Identifier = "target_1"
    type: Literal["clickhouse"] = "clickhouse"
    connector_id: str | None = Field(
        default=None, max_length=64, description="A ClickHouse connector; none = the platform's warehouse"
    )
    database: Identifier | None = None
    table: Identifier
    input: Identifier | None = Field(
        default=None, description="Source or transformation id to load (default: the last step)"
    )
    mode: LoadMode = LoadMode.APPEND
    cursor_column: Identifier | None = Field(default=None, description="incremental: the cursor column")
    merge_keys: tuple[Identifier, ...] = Field(default=(), max_length=32, description="merge: the key")
    order_by: tuple[Identifier, ...] = Field(
        default=(), max_length=32, description="ORDER BY of a table the load creates (default: merge keys)"
    )
    create_table: bool = Field(default=True, description="Create the table from the data when absent")

    @model_validator(mode="before")
    @classmethod
    def _inline_config(cls, data: Any) -> Any:
        data = _lift_inline_config(
            data, ("connector_id", "table", "database", "mode", "cursor_column", "merge_keys", "order_by")
        )
        if isinstance(data, dict):
            options = data.pop("options", None) or {}
            if options:
                raise ValueError(f"unknown target settings: {', '.join(sorted(options))}")
            if isinstance(data.get("type"), str) and data["type"].lower() == "clickhouse":
                data["type"] = "clickhouse"
        return data

    @model_validator(mode="after")
    def _mode_needs(self) -> Target:
        if self.mode is LoadMode.INCREMENTAL and not self.cursor_column:
            raise ValueError("incremental mode needs cursor_column")
        if self.mode is LoadMode.MERGE and not self.merge_keys:
            raise ValueError("merge mode needs merge_keys")
        if self.database in RESERVED_DATABASES:
            raise ValueError(f"database {self.database!r} belongs to the warehouse itself")
        if (
            (self.database in (None, "default"))
            and self.connector_id is None
            and (self.table in RESERVED_TABLES or self.table.startswith(("aetl_", "_aetl")))
        ):
            raise ValueError(f"table {self.table!r} is one of the platform's own tables")
        return self


class Trigger(_Strict):
    """When a pipeline runs besides on request: `cron` (a Dagster schedule) or `manual` (a record only)."""

    id: Identifier = "trigger_1"
    name: str = Field(default="", max_length=200)
    type: Literal["cron", "manual"] = "cron"
    cron: str | None = Field(default=None, max_length=120)
    timezone: str = Field(default="UTC", max_length=64)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _spec_shape(cls, data: Any) -> Any:
        # ai-etl: {"trigger_type": "cron", "config": {"cron_expression": "..."}}
        if isinstance(data, dict):
            data = dict(data)
            if "trigger_type" in data and "type" not in data:
                data["type"] = data.pop("trigger_type")
            config = data.pop("config", None) or {}
            if not isinstance(config, dict):
                raise ValueError("config must be an object")
            if "cron_expression" in config and data.get("cron") is None:
                data["cron"] = config.pop("cron_expression")
            if "timezone" in config and "timezone" not in data:
                data["timezone"] = config.pop("timezone")
            if config:
                raise ValueError(f"unknown trigger settings: {', '.join(sorted(config))}")
        return data

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @model_validator(mode="after")
    def _cron_needed(self) -> Trigger:
        if self.type == "cron" and not self.cron:
            raise ValueError("a cron trigger needs cron (config.cron_expression)")
        return self


def validate_cron(value: str) -> str:
    """Five fields (minute hour day month weekday) or @hourly/@daily/...: what Dagster schedules accept."""
    value = " ".join(value.split())
    aliases = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}
    if value not in aliases and (len(value.split(" ")) != 5 or not croniter.is_valid(value)):
        raise ValueError(
            f"not a valid cron expression: {value!r} (five fields: minute hour day month weekday)"
        )
    return value


def validate_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone: {value!r} (an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None
    return value


class PipelineDocument(_Strict):
    """One version of a pipeline. Immutable; `content_hash()` identifies it."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    sources: tuple[Source, ...] = Field(min_length=1, max_length=50)
    transformations: tuple[Transformation, ...] = Field(default=(), max_length=100)
    targets: tuple[Target, ...] = Field(min_length=1, max_length=50)
    schedule: str | None = Field(default=None, max_length=120, description="cron; a Dagster schedule")
    schedule_timezone: str = Field(default="UTC", max_length=64)
    triggers: tuple[Trigger, ...] = Field(default=(), max_length=20)
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Defaults for run parameters (strings, numbers, booleans)"
    )
    tags: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value in (None, "") else validate_cron(value)  # type: ignore[arg-type]

    @field_validator("schedule_timezone")
    @classmethod
    def _schedule_timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("parameters")
    @classmethod
    def _scalar_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not re.match(IDENTIFIER_PATTERN, key):
                raise ValueError(f"parameter name {key!r} is not an identifier")
            if not isinstance(item, str | int | float | bool) or item is None:
                raise ValueError(f"parameter {key!r} must be a string, number or boolean")
        return value

    @model_validator(mode="after")
    def _references(self) -> PipelineDocument:
        seen: dict[str, str] = {}
        groups: tuple[tuple[str, tuple[Source | Transformation | Target, ...]], ...] = (
            ("sources", self.sources),
            ("transformations", self.transformations),
            ("targets", self.targets),
        )
        for kind, items in groups:
            for index, item in enumerate(items):
                if item.id in seen:
                    raise DocumentError(f"{kind}.{index}.id", f"id {item.id!r} is used twice")
                seen[item.id] = kind
        readable = [s.id for s in self.sources]
        for index, step in enumerate(self.transformations):
            if step.input is not None and step.input not in readable:
                raise DocumentError(
                    f"transformations.{index}.input", f"{step.input!r} is not an earlier source or step"
                )
            readable.append(step.id)
        tables: set[tuple[str | None, str | None, str]] = set()
        for index, target in enumerate(self.targets):
            if target.input is not None and target.input not in readable:
                raise DocumentError(f"targets.{index}.input", f"{target.input!r} is not a source or step")
            if target.input is None and not self.transformations and len(self.sources) > 1:
                raise DocumentError(f"targets.{index}.input", "several sources: say which one to load")
            key = (target.connector_id, target.database, target.table)
            if key in tables:
                raise DocumentError(f"targets.{index}.table", f"{target.table!r} is loaded twice")
            tables.add(key)
        return self

    def input_of(self, target: Target) -> str:
        """The relation a target loads: its `input`, else the last transformation, else the only source."""
        if target.input:
            return target.input
        return self.transformations[-1].id if self.transformations else self.sources[0].id

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """Same document, same hash: an update that changes nothing makes no new version."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def cron_schedules(self) -> list[tuple[str, str, str, bool]]:
        """(name, cron, timezone, enabled) for the document's schedule and each cron trigger."""
        out: list[tuple[str, str, str, bool]] = []
        if self.schedule:
            out.append(("schedule", self.schedule, self.schedule_timezone, True))
        out.extend(
            (t.id, t.cron, t.timezone, t.enabled) for t in self.triggers if t.type == "cron" and t.cron
        )
        return out

    @classmethod
    def parse(cls, data: Any) -> PipelineDocument:
        """Validate, raising DocumentError for the first problem with the field's dotted path."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            cause = (first.get("ctx") or {}).get("error")
            if isinstance(cause, DocumentError):
                raise cause from None
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise DocumentError(field, first["msg"].removeprefix("Value error, ")) from None


def document_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """A structural diff of two JSON documents: added / removed / changed paths with old and new values.

    Lists of objects with an `id` are matched by id (a reordered or inserted source is not "everything
    changed"); other lists by position.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                changes.append({"path": sub, "change": "added", "old": None, "new": new[key]})
            elif key not in new:
                changes.append({"path": sub, "change": "removed", "old": old[key], "new": None})
            else:
                changes.extend(document_diff(old[key], new[key], sub))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        if _all_have_ids(old) and _all_have_ids(new):
            return document_diff({item["id"]: item for item in old}, {item["id"]: item for item in new}, path)
        changes = []
        for index in range(max(len(old), len(new))):
            sub = f"{path}[{index}]"
            if index >= len(old):
                changes.append({"path": sub, "change": "added", "old": None, "new": new[index]})
            elif index >= len(new):
                changes.append({"path": sub, "change": "removed", "old": old[index], "new": None})
            else:
                changes.extend(document_diff(old[index], new[index], sub))
        return changes
    if old != new:
        return [{"path": path, "change": "changed", "old": old, "new": new}]
    return []


def _all_have_ids(items: list[Any]) -> bool:
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    return len(ids) == len(items) and all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)
