"""What every code location shares: the warehouse resource and the executor."""

import os

from dagster import Definitions, in_process_executor

from orchestration.warehouse.resource import ClickHouseResource, clickhouse_url_setting


def shared_definitions() -> Definitions:
    """Resources and executor merged into each code location.

    Steps run inside the run worker: a subprocess per step costs ~3-5 s of imports on 2 cores, more than
    most of our steps take; parallelism comes from concurrent runs instead.
    """
    return Definitions(
        resources={"clickhouse": ClickHouseResource(url=clickhouse_url_setting())},
        executor=in_process_executor,
    )


def metadata_database_url() -> str:
    """The API's metadata DB, as a plain libpq URL (what the locations read their definitions from)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        from api.core.config import get_settings  # the same defaults as the API when run outside the stack

        url = get_settings().database_url
    # psycopg takes plain libpq URLs; SQLAlchemy's driver suffix is not one
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
