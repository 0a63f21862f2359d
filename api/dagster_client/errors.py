"""Errors of the Dagster client, already in the API contract's terms (status + codes).

The API's one error handler turns any `DagsterClientError` into the contract's error shape:
`http_status`, `error_code` (ai-etl code), `aggregator_code` (errors[].code), `message`, `details`.
Messages never carry Dagster stack traces (those stay in the server log via `__cause__`).
"""

from __future__ import annotations

from typing import Any


class DagsterClientError(Exception):
    """Anything that went wrong talking to Dagster; base of the hierarchy."""

    http_status: int = 500
    error_code: str = "PIPELINE_EXECUTION_ERROR"
    aggregator_code: str = "SYS_001"

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, internal_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        # Dagster's own text (may name paths, SQL, hosts): for the server log, never for a response body.
        self.internal_message = internal_message or message

    def __str__(self) -> str:
        return self.internal_message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class DagsterUnavailable(DagsterClientError):
    """The webserver cannot be reached, timed out or answered 5xx (retry later)."""

    http_status = 503
    # The contract has no "unavailable" code; the run could not be handled by the engine.
    error_code = "PIPELINE_EXECUTION_ERROR"
    aggregator_code = "CONN_001"


class DagsterNotFound(DagsterClientError):
    """A run, job, schedule, sensor, asset or code location Dagster does not know."""

    http_status = 404
    error_code = "RESOURCE_NOT_FOUND"
    aggregator_code = "RES_001"


class DagsterInvalidRequest(DagsterClientError):
    """Dagster refused the request as given (invalid run config, bad asset subset, bad step keys)."""

    http_status = 422
    error_code = "VALIDATION_ERROR"
    aggregator_code = "VAL_001"


class DagsterConflict(DagsterClientError):
    """A run with the same id already exists (RunConflict)."""

    http_status = 409
    error_code = "DUPLICATE_RESOURCE"
    aggregator_code = "VAL_001"


class DagsterRunError(DagsterClientError):
    """Dagster failed while handling the request (PythonError, failed termination, ...)."""

    http_status = 500
    error_code = "PIPELINE_EXECUTION_ERROR"
    aggregator_code = "SYS_001"


# GraphQL error typenames -> exception class; anything unlisted is a DagsterRunError.
ERROR_TYPENAMES: dict[str, type[DagsterClientError]] = {
    "RunNotFoundError": DagsterNotFound,
    "PipelineNotFoundError": DagsterNotFound,
    "RepositoryNotFoundError": DagsterNotFound,
    "RepositoryLocationNotFound": DagsterNotFound,
    "ScheduleNotFoundError": DagsterNotFound,
    "SensorNotFoundError": DagsterNotFound,
    "AssetNotFoundError": DagsterNotFound,
    "PresetNotFoundError": DagsterNotFound,
    "RunConfigValidationInvalid": DagsterInvalidRequest,
    "InvalidSubsetError": DagsterInvalidRequest,
    "InvalidStepError": DagsterInvalidRequest,
    "InvalidOutputError": DagsterInvalidRequest,
    "ConflictingExecutionParamsError": DagsterInvalidRequest,
    "NoModeProvidedError": DagsterInvalidRequest,
    "InvalidPipelineRunsFilterError": DagsterInvalidRequest,
    "ReloadNotSupported": DagsterInvalidRequest,
    "RunConflict": DagsterConflict,
    "PythonError": DagsterRunError,
    "UnauthorizedError": DagsterRunError,
    # "could not be terminated due to having status SUCCESS": the caller asked for the impossible.
    "TerminateRunFailure": DagsterInvalidRequest,
}


def error_for_typename(typename: str) -> type[DagsterClientError]:
    return ERROR_TYPENAMES.get(typename, DagsterRunError)
