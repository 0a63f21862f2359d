"""The one paging dependency: `skip`/`limit` (aggregator) or `offset`/`limit` (ai-etl), bounded.

Bounds keep every value inside what PostgreSQL's OFFSET/LIMIT accept (an unbounded integer
was a 500); a domain with other defaults builds its own with `paging_dependency(...)`.
"""

# no `from __future__ import annotations`: the bounds in the closure must be evaluated, not deferred

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

MAX_OFFSET = 1_000_000_000
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


def paging_dependency(default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT) -> Callable[..., Page]:
    def paging(
        skip: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="rows to skip (= offset)")] = None,
        offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="rows to skip (= skip)")] = None,
        limit: Annotated[int, Query(ge=1, le=max_limit, description="page size")] = default_limit,
    ) -> Page:
        return Page(offset=skip if skip is not None else offset or 0, limit=limit)

    return paging


PagingDep = Annotated[Page, Depends(paging_dependency())]
