"""The code location `aetl`: one Definitions merged from the domain modules in orchestration/defs/."""

from dagster import Definitions, in_process_executor

from orchestration.defs import datamarts, maintenance, warehouse

# Steps run inside the run worker: a subprocess per step costs ~3-5 s of imports on 2 cores, more than
# most of our steps take; parallelism comes from concurrent runs instead.
defs = Definitions.merge(
    warehouse.defs,
    datamarts.defs,
    maintenance.defs,
    Definitions(executor=in_process_executor),
)
