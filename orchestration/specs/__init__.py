"""Documents shared by the API and the code locations (pipeline, later datamart and watch).

Pure pydantic: importing this package imports neither FastAPI nor Dagster.
"""

from orchestration.specs.pipeline import (
    FILE_SOURCE_TYPES,
    DocumentError,
    LoadMode,
    PipelineDocument,
    Source,
    SourceType,
    Target,
    Transformation,
    TransformationType,
    Trigger,
    document_diff,
)

__all__ = [
    "FILE_SOURCE_TYPES",
    "DocumentError",
    "LoadMode",
    "PipelineDocument",
    "Source",
    "SourceType",
    "Target",
    "Transformation",
    "TransformationType",
    "Trigger",
    "document_diff",
]
