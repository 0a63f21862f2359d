"""Request and response bodies of /api/v1/mvp/storage/* (ai-etl spec, MVP features)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
MountPoint = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^/[^\x00]*$")]


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str | None = Field(default=None, max_length=128)
    password: SecretStr | None = Field(default=None, max_length=1024)
    private_key: SecretStr | None = Field(
        default=None, max_length=16384, description="sftp: a PEM private key"
    )


class MountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    storage_type: Literal["local", "smb", "sftp"]
    host: str | None = Field(default=None, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$")
    port: int | None = Field(default=None, ge=1, le=65535)
    share_name: str | None = Field(default=None, max_length=80, pattern=r"^[^\\/\x00:*?\"<>|]+$")
    path: str = Field(
        default="",
        max_length=1024,
        description="local: the folder (inside AETL_FILE_ROOTS); sftp/smb: a folder on the server",
    )
    credentials: Credentials | None = None
    mount_point: MountPoint | None = Field(
        default=None, description="The name import paths start with (default: the path for local mounts)"
    )


class MountPublic(BaseModel):
    storage_id: str
    storage_type: str
    status: str
    mount_point: str
    available_space_gb: float | None
    mounted_at: datetime
    config: dict[str, Any] = Field(description="Where it points; credentials masked")


class MountList(BaseModel):
    items: list[MountPublic]
    total: int


class ImportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_connector_id: str | None = Field(default=None, max_length=64)
    target_table: Identifier
    target_database: Identifier | None = None
    create_table_if_not_exists: bool = True
    sheet: str | None = Field(default=None, max_length=31)


class WatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    storage_id: str = Field(max_length=40)
    watch_path: str = Field(default="/", max_length=1024)
    file_pattern: str = Field(default="*", min_length=1, max_length=256, pattern=r"^[^/\x00]+$")
    recursive: bool = False
    auto_import: bool = True
    import_config: ImportConfig | None = None
    poll_interval_seconds: int = Field(default=2, ge=1, le=3600)


class WatchPublic(BaseModel):
    watch_id: str
    storage_id: str
    watch_path: str
    file_pattern: str
    recursive: bool
    auto_import: bool
    status: Literal["active", "paused"]
    files_detected: int
    sensor_name: str
    last_checked_at: datetime | None
    created_at: datetime
    import_config: dict[str, Any]


class WatchList(BaseModel):
    items: list[WatchPublic]
    total: int


class ImportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_path: str = Field(min_length=1, max_length=1024)
    storage_id: str | None = Field(
        default=None, max_length=40, description="when file_path is relative to it"
    )
    target_connector_id: str | None = Field(default=None, max_length=64)
    target_table: Identifier
    target_database: Identifier | None = None
    infer_schema: bool = True
    create_table_if_not_exists: bool = True
    sheet: str | None = Field(default=None, max_length=31)


class InferredColumn(BaseModel):
    name: str
    type: Literal["integer", "decimal", "float", "date", "datetime", "bool", "string"]
    nullable: bool
    clickhouse_type: str


class InferredSchema(BaseModel):
    format: str
    encoding: str
    delimiter: str | None
    quotechar: str | None
    header: bool
    compression: str
    sheet: str | None
    columns: list[InferredColumn]


class ImportAccepted(BaseModel):
    import_id: str
    status: str
    run_id: str
    dagster_run_id: str
    storage_id: str
    file_path: str
    target_table: str
    inferred_schema: InferredSchema
    estimated_rows: int
    estimated_rows_exact: bool
    estimate_method: str
    started_at: datetime


class ImportStatus(BaseModel):
    import_id: str
    status: str
    run_id: str | None
    dagster_run_id: str | None
    storage_id: str
    file_path: str
    target_table: str
    rows_loaded: int | None
    rows_quarantined: int | None
    quarantine_table: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None
