"""Engine and sessions of the metadata database (one engine per database URL and process)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from api.core.config import get_settings


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    # short connect timeout: a dead database must fail a request (or a health check) fast
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )


def get_engine() -> Engine:
    return engine_for(get_settings().database_url)


@lru_cache(maxsize=4)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=engine_for(url), expire_on_commit=False)


def new_session() -> Session:
    return _session_factory(get_settings().database_url)()


def session_scope() -> Iterator[Session]:
    """Dependency body: one session per request, rolled back on error, always closed."""
    session = new_session()
    try:
        yield session
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()
