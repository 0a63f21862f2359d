"""Every table of the metadata DB in one import (Alembic's metadata; stable import path for domains).

Tables live in their domain's models.py; `Base` lives in api.db.base.
"""

from __future__ import annotations

from api.activity.models import ActivityLog
from api.admin.models import CleanupRun, SystemSetting
from api.auth.models import AccountToken, ApiKey, RefreshToken
from api.db.base import NAMING_CONVENTION, Base, new_id, utcnow
from api.preferences.models import DashboardLayout, UserPreferences
from api.projects.models import Project
from api.users.models import User
from api.webhooks.models import Webhook, WebhookDelivery

__all__ = [
    "NAMING_CONVENTION",
    "AccountToken",
    "CleanupRun",
    "ActivityLog",
    "ApiKey",
    "DashboardLayout",
    "Project",
    "SystemSetting",
    "UserPreferences",
    "Webhook",
    "WebhookDelivery",
    "Base",
    "RefreshToken",
    "User",
    "new_id",
    "utcnow",
]

# every domain's tables on the one metadata, so Alembic and the migration check see them all
import api.connectors.models  # noqa: E402, F401
import api.datamarts.models  # noqa: E402, F401
import api.pipelines.models  # noqa: E402, F401
import api.schema.models  # noqa: E402, F401
import api.storage.models  # noqa: E402, F401
