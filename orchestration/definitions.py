"""The code location `aetl`: one Definitions merged from the domain modules in orchestration/defs/.

Datamarts (dbt) are the second location `aetl_datamarts` (module orchestration.defs.datamarts).
"""

from dagster import Definitions

from orchestration.defs import maintenance, warehouse, webhooks
from orchestration.defs.common import shared_definitions

defs = Definitions.merge(warehouse.defs, maintenance.defs, webhooks.defs, shared_definitions())
