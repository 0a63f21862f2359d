"""Start-up tasks of the metadata database, run by the stack supervisor before the API starts.

``python -m api.db.setup``: create the database if missing, ``alembic upgrade head``, create the
first admin from AETL_ADMIN_* once (never overwritten). Idempotent; safe on every start.
"""

from __future__ import annotations

import logging
import sys

from alembic import command
from alembic.config import Config
from sqlalchemy import or_, select

from api.core.config import REPO_ROOT, get_settings
from api.core.security import hash_password
from api.db.session import new_session
from api.users.models import User
from orchestration.lib.pg import database_name, ensure_pg_database

logger = logging.getLogger("api.db.setup")


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.attributes["configure_logger"] = False
    if database_url:
        # ConfigParser interpolation: a literal % in a password must be doubled
        cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL (via the server's `postgres` db) if missing."""
    created = ensure_pg_database(database_url)
    if created:
        logger.info("created database %s", database_name(database_url))
    return created


def ensure_database_and_migrate(database_url: str | None = None) -> None:
    url = database_url or get_settings().database_url
    ensure_database(url)
    command.upgrade(alembic_config(url), "head")
    logger.info("metadata database at head")


def ensure_admin() -> str | None:
    """Create the first admin from settings if no user has that name or email; returns its id."""
    settings = get_settings()
    username, email = settings.admin_username.strip(), settings.admin_email.strip().lower()
    with new_session() as session:
        existing = session.scalar(select(User).where(or_(User.username == username, User.email == email)))
        if existing is not None:
            return None
        user = User(
            username=username,
            email=email,
            full_name="Administrator",
            role="admin",
            hashed_password=hash_password(settings.admin_password.get_secret_value()),
            is_active=True,
            email_verified=True,
        )
        session.add(user)
        session.commit()
        logger.info("created first admin %s (%s)", username, user.id)
        return user.id


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        ensure_database_and_migrate()
        ensure_admin()
    except Exception as exc:  # the supervisor needs a one-line reason, not a traceback with a URL
        logger.error("metadata database setup failed: %s", type(exc).__name__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
