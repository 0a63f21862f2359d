"""What every code location shares: the warehouse resource and the executor."""

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
