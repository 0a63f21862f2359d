"""The one settings object of the platform (API, stack supervisor, tests).

Every value is an environment variable (or `.env`); defaults are for development on one
machine. Database names default to names keyed by `API_PORT`, so two copies of the stack
(e.g. a developer's and a CI run on other ports) never share metadata or Dagster storage.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev-secret-change-me"}
# 32+ bytes: HS256 keys shorter than the hash are weak (PyJWT warns); still refused outside development
DEV_SECRET_KEY = "dev-secret-change-me-not-for-production"
DEV_ENCRYPTION_KEY = "dev-encryption-key-change-me"
DEFAULT_ADMIN_PASSWORD = "admin12345"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development", validation_alias="AETL_ENV"
    )
    version: str = "1.0.0"

    # processes and ports
    host: str = Field("127.0.0.1", validation_alias="AETL_HOST")  # the API's address only
    # the embedded warehouse and the Dagster UI stay on loopback unless these expose them
    warehouse_host: str = Field("127.0.0.1", validation_alias="AETL_WAREHOUSE_HOST")
    dagster_host: str = Field("127.0.0.1", validation_alias="AETL_DAGSTER_HOST")
    api_port: int = Field(8000, validation_alias="API_PORT")
    dagster_port: int = Field(3000, validation_alias="DAGSTER_PORT")
    clickhouse_http_port: int = Field(8123, validation_alias="CLICKHOUSE_HTTP_PORT")
    # first of the ports of the Dagster code servers (one per code location, consecutive)
    dagster_code_server_port_override: int | None = Field(None, validation_alias="DAGSTER_CODE_SERVER_PORT")
    data_dir: Path = Field(REPO_ROOT / ".data", validation_alias="AETL_DATA_DIR")
    # how Dagster starts run workers: "warm" forks them from a pre-imported process, "default" is
    # Dagster's DefaultRunLauncher (the code server spawns a fresh Python per run)
    run_launcher: Literal["warm", "default"] = Field("warm", validation_alias="AETL_RUN_LAUNCHER")

    # storage
    pg_server_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432", validation_alias="AETL_PG_SERVER_URL"
    )
    database_url_override: str | None = Field(None, validation_alias="DATABASE_URL")
    dagster_pg_url_override: str | None = Field(None, validation_alias="DAGSTER_PG_URL")
    # empty: the embedded chDB-backed server on CLICKHOUSE_HTTP_PORT; else a real ClickHouse
    clickhouse_url_override: str | None = Field(None, validation_alias="CLICKHOUSE_URL")
    dagster_url_override: str | None = Field(None, validation_alias="DAGSTER_URL")
    # the embedded warehouse's own user; its password is CLICKHOUSE_PASSWORD or a generated file
    clickhouse_user: str = Field("default", validation_alias="CLICKHOUSE_USER")
    clickhouse_password_override: SecretStr | None = Field(None, validation_alias="CLICKHOUSE_PASSWORD")
    # folders file() may read in the embedded warehouse (os.pathsep-separated); empty: $AETL_DATA_DIR/imports
    warehouse_file_roots: str = Field("", validation_alias="AETL_WAREHOUSE_FILE_ROOTS")
    warehouse_max_sessions: int = Field(256, validation_alias="AETL_WAREHOUSE_MAX_SESSIONS")
    warehouse_max_multipart_bytes: int = Field(
        256 * 1024 * 1024, validation_alias="AETL_WAREHOUSE_MAX_MULTIPART_BYTES"
    )

    # security
    secret_key: SecretStr = Field(SecretStr(DEV_SECRET_KEY), validation_alias="AETL_SECRET_KEY")
    encryption_key: SecretStr = Field(SecretStr(DEV_ENCRYPTION_KEY), validation_alias="AETL_ENCRYPTION_KEY")
    access_token_minutes: int = Field(60, validation_alias="AETL_ACCESS_TOKEN_MINUTES")
    refresh_token_days: int = Field(14, validation_alias="AETL_REFRESH_TOKEN_DAYS")
    # absolute lifetime of a login session: refresh rotation never extends it past this
    session_max_days: float = Field(30, gt=0, validation_alias="AETL_SESSION_MAX_DAYS")
    # HMAC key of stored API-key hashes; empty: derived from AETL_ENCRYPTION_KEY (not the JWT secret)
    api_key_hash_key: SecretStr = Field(SecretStr(""), validation_alias="AETL_API_KEY_HASH_KEY")
    self_registration_role: str = Field("viewer", validation_alias="AETL_SELF_REGISTRATION_ROLE")

    # first admin (created once at start-up, never overwritten)
    admin_username: str = Field("admin", validation_alias="AETL_ADMIN_USERNAME")
    admin_email: str = Field("admin@example.com", validation_alias="AETL_ADMIN_EMAIL")
    admin_password: SecretStr = Field(
        SecretStr(DEFAULT_ADMIN_PASSWORD), validation_alias="AETL_ADMIN_PASSWORD"
    )

    # rate limits (requests per minute)
    rate_limit_default: int = Field(100, validation_alias="AETL_RATE_LIMIT_DEFAULT")
    rate_limit_generation: int = Field(10, validation_alias="AETL_RATE_LIMIT_GENERATION")
    rate_limit_admin: int = Field(1000, validation_alias="AETL_RATE_LIMIT_ADMIN")
    rate_limit_anonymous: int = Field(100, validation_alias="AETL_RATE_LIMIT_ANONYMOUS")
    # empty: in-process counters; "redis://..." shares them between API replicas
    rate_limit_storage: str = Field("memory://", validation_alias="AETL_RATE_LIMIT_STORAGE")
    max_body_bytes: int = Field(10 * 1024 * 1024, validation_alias="AETL_MAX_BODY_BYTES")
    rate_limit_enabled: bool = Field(True, validation_alias="AETL_RATE_LIMIT_ENABLED")
    # failed logins / 2FA codes before a temporary lock-out (per account, per client address)
    login_max_failures_per_account: int = Field(
        10, ge=1, validation_alias="AETL_LOGIN_MAX_FAILURES_PER_ACCOUNT"
    )
    login_max_failures_per_address: int = Field(
        30, ge=1, validation_alias="AETL_LOGIN_MAX_FAILURES_PER_ADDRESS"
    )
    login_lockout_seconds: int = Field(900, ge=1, validation_alias="AETL_LOGIN_LOCKOUT_SECONDS")
    # comma-separated addresses/networks of reverse proxies whose X-Forwarded-For is believed;
    # empty: the peer address is the client (uvicorn runs with --no-proxy-headers)
    trusted_proxies_raw: str = Field("", validation_alias="AETL_TRUSTED_PROXIES")

    # api behaviour
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field("HS256", validation_alias="AETL_JWT_ALGORITHM")
    # per-component timeout of /health/detailed (checks run concurrently)
    # how long the API serves Dagster's last answer about runs before asking again (0: always ask)
    run_cache_seconds: float = Field(1.0, ge=0, le=60, validation_alias="AETL_RUN_CACHE_SECONDS")
    # how long the same caller asking the same list URL gets the same answer (api/core/response_cache)
    response_cache_seconds: float = Field(1.0, ge=0, le=10, validation_alias="AETL_RESPONSE_CACHE_SECONDS")
    health_check_timeout_seconds: float = Field(2.0, validation_alias="AETL_HEALTH_TIMEOUT_SECONDS")
    # optional cache / shared state; empty means "not configured" (reported honestly by /health/cache)
    redis_url: str | None = Field(None, validation_alias="AETL_REDIS_URL")
    log_level: str = Field("INFO", validation_alias="AETL_LOG_LEVEL")
    # folders file connectors may read (os.pathsep-separated); empty: $AETL_DATA_DIR/imports
    file_roots_override: str | None = Field(None, validation_alias="AETL_FILE_ROOTS")

    @property
    def trusted_proxies(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies_raw.split(",") if p.strip()]

    # mail: smtp://user:pass@host:587?starttls=true or smtps://...; unset = files in the outbox folder
    smtp_url: SecretStr | None = Field(None, validation_alias="AETL_SMTP_URL")
    mail_from: str = Field("AETL <aetl@localhost>", validation_alias="AETL_MAIL_FROM")
    mail_outbox_dir_override: Path | None = Field(None, validation_alias="AETL_MAIL_OUTBOX_DIR")
    smtp_timeout_seconds: float = Field(10.0, validation_alias="AETL_SMTP_TIMEOUT_SECONDS")
    email_verify_token_hours: int = Field(48, ge=1, validation_alias="AETL_EMAIL_VERIFY_TOKEN_HOURS")
    password_reset_token_minutes: int = Field(30, ge=1, validation_alias="AETL_PASSWORD_RESET_TOKEN_MINUTES")
    # mails of one kind to one account per window (further requests answer the same, send nothing)
    account_mail_limit: int = Field(3, ge=1, validation_alias="AETL_ACCOUNT_MAIL_LIMIT")
    account_mail_window_minutes: int = Field(15, ge=1, validation_alias="AETL_ACCOUNT_MAIL_WINDOW_MINUTES")

    # webhooks: targets on loopback / private networks are refused unless allowed here
    webhook_allow_loopback: bool = Field(False, validation_alias="AETL_WEBHOOK_ALLOW_LOOPBACK")
    webhook_allow_private: bool = Field(False, validation_alias="AETL_WEBHOOK_ALLOW_PRIVATE")
    webhook_timeout_seconds: float = Field(5.0, gt=0, validation_alias="AETL_WEBHOOK_TIMEOUT_SECONDS")
    webhook_max_attempts: int = Field(4, ge=1, le=10, validation_alias="AETL_WEBHOOK_MAX_ATTEMPTS")
    webhook_backoff_seconds: float = Field(1.0, ge=0, validation_alias="AETL_WEBHOOK_BACKOFF_SECONDS")
    # alert.triggered after this many failed runs in a row of one pipeline (orchestration/defs/webhooks.py)
    alert_consecutive_failures: int = Field(
        3, ge=1, le=100, validation_alias="AETL_ALERT_CONSECUTIVE_FAILURES"
    )

    @property
    def instance_suffix(self) -> str:
        return "" if self.api_port == 8000 else f"_{self.api_port}"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the metadata database."""
        if self.database_url_override:
            return self.database_url_override
        db = "aetl_test" if self.environment == "test" else "aetl"
        return f"{self.pg_server_url}/{db}{self.instance_suffix}"

    @property
    def dagster_pg_url(self) -> str:
        """libpq URL of Dagster's instance storage (dagster-postgres)."""
        if self.dagster_pg_url_override:
            return self.dagster_pg_url_override
        db = "aetl_dagster_test" if self.environment == "test" else "aetl_dagster"
        server = self.pg_server_url.replace("postgresql+psycopg://", "postgresql://")
        return f"{server}/{db}{self.instance_suffix}"

    @property
    def clickhouse_url(self) -> str:
        return self.clickhouse_url_override or f"http://127.0.0.1:{self.clickhouse_http_port}"

    @property
    def embedded_warehouse(self) -> bool:
        return not self.clickhouse_url_override

    @property
    def dagster_url(self) -> str:
        return self.dagster_url_override or f"http://127.0.0.1:{self.dagster_port}"

    @property
    def dagster_code_server_port(self) -> int:
        return self.dagster_code_server_port_override or self.dagster_port + 1

    @property
    def dagster_home(self) -> Path:
        return self.data_dir.resolve() / "dagster_home"

    @property
    def mail_outbox_dir(self) -> Path:
        return (self.mail_outbox_dir_override or self.data_dir / "outbox").resolve()

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir.resolve() / "warehouse"

    @property
    def warehouse_password_file(self) -> Path:
        from orchestration.warehouse.credentials import password_file

        return password_file(self.data_dir.resolve())

    def warehouse_credentials(self) -> tuple[str, SecretStr] | None:
        """User and password of the embedded warehouse (None for a real ClickHouse: its URL has them)."""
        if not self.embedded_warehouse:
            return None
        if self.clickhouse_password_override is not None:
            return self.clickhouse_user, self.clickhouse_password_override
        try:
            return self.clickhouse_user, SecretStr(self.warehouse_password_file.read_text().strip())
        except FileNotFoundError:
            return None

    @property
    def file_roots(self) -> list[Path]:
        if self.file_roots_override:
            return [Path(p).expanduser().resolve() for p in self.file_roots_override.split(":") if p]
        return [self.data_dir.resolve() / "imports"]

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            for name in ("secret_key", "encryption_key"):
                value = getattr(self, name).get_secret_value()
                if value in PLACEHOLDER_SECRETS or value.startswith("dev-") or len(value) < 32:
                    raise ValueError(f"{name} must be set to a real secret outside development")
            if self.admin_password.get_secret_value() == DEFAULT_ADMIN_PASSWORD:
                raise ValueError("AETL_ADMIN_PASSWORD must be set (not the default) in production")
        return self

    @model_validator(mode="after")
    def _known_registration_role(self) -> Settings:
        from api.core.permissions import ROLE_NAMES  # the one role table

        if self.self_registration_role not in ROLE_NAMES:
            raise ValueError(f"AETL_SELF_REGISTRATION_ROLE must be one of {', '.join(ROLE_NAMES)}")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
