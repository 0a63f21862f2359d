"""Project bodies (ProjectCreate / ProjectUpdate / ProjectPublic); bare bodies like the ai-etl spec."""

from __future__ import annotations

from pydantic import Field

from api.core.schemas import RequestModel, ResponseModel, UTCDateTime


class ProjectCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)


class ProjectUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)


class ProjectPublic(ResponseModel):
    id: str
    name: str
    description: str | None
    owner_id: str | None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class ProjectList(ResponseModel):
    items: list[ProjectPublic]
    total: int
    limit: int
    offset: int
