"""Data movement: everything that moves rows for one pipeline target (extract → transform → load).

The pipelines code location calls one function per target asset::

    result = move_target(document, target, MoveContext(log=context.log, run_id=..., load_id=...), warehouse)
    return MaterializeResult(metadata=result.as_metadata())

`load_id` is what makes a load idempotent: the same load id (a run and its re-executions share the
root run id) never writes the same rows twice.
"""

from orchestration.movement.engine import MoveContext, MoveError, MoveResult, move_target

__all__ = ["MoveContext", "MoveError", "MoveResult", "move_target"]
