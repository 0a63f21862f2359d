"""Per-user preferences, widget settings and dashboard layouts. A user only ever reaches their own
rows: every query is keyed by the caller's id, and another user's layout is simply not found."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.core.errors import Conflict, NotFound
from api.preferences.models import DashboardLayout, UserPreferences
from api.preferences.schemas import LayoutConfig, LayoutWidget, PreferencesUpdate, WidgetUpdate
from api.users.models import User

DEFAULT_PREFERENCES: dict[str, Any] = {
    "theme": "light",
    "language": "en",
    "timezone": "UTC",
    "notifications_enabled": True,
}


@dataclass(frozen=True)
class Widget:
    widget_id: str
    title: str
    x: int
    y: int
    w: int
    h: int


# the home dashboard a new user sees (12-column grid)
WIDGET_CATALOG: tuple[Widget, ...] = (
    Widget("pipeline_status", "Pipeline status", 0, 0, 6, 4),
    Widget("recent_runs", "Recent runs", 6, 0, 6, 4),
    Widget("system_health", "System health", 0, 4, 4, 3),
    Widget("datamart_freshness", "Datamart freshness", 4, 4, 4, 3),
    Widget("activity_feed", "Activity", 8, 4, 4, 3),
)
WIDGETS = {w.widget_id: w for w in WIDGET_CATALOG}
DEFAULT_LAYOUT_NAME = "Default"


def _default_widget(widget: Widget) -> dict[str, Any]:
    return {
        "widget_id": widget.widget_id,
        "title": widget.title,
        "visible": True,
        "position": {"x": widget.x, "y": widget.y},
        "size": {"w": widget.w, "h": widget.h},
        "settings": {},
    }


def default_layout_config() -> dict[str, Any]:
    return LayoutConfig(
        columns=12,
        widgets=[LayoutWidget(widget_id=w.widget_id, x=w.x, y=w.y, w=w.w, h=w.h) for w in WIDGET_CATALOG],
    ).model_dump(mode="json")


# --- preferences ------------------------------------------------------------------------------


def get_preferences(session: Session, user: User) -> dict[str, Any]:
    row = session.get(UserPreferences, user.id)
    if row is None:
        return {"user_id": user.id, **DEFAULT_PREFERENCES, "updated_at": None}
    return {
        "user_id": user.id,
        "theme": row.theme,
        "language": row.language,
        "timezone": row.timezone,
        "notifications_enabled": row.notifications_enabled,
        "updated_at": row.updated_at,
    }


def _row(session: Session, user: User) -> UserPreferences:
    row = session.get(UserPreferences, user.id, with_for_update=True)
    if row is None:
        row = UserPreferences(user_id=user.id, widgets={}, **DEFAULT_PREFERENCES)
        session.add(row)
    return row


def update_preferences(
    session: Session, user: User, data: PreferencesUpdate, ip: str | None
) -> dict[str, Any]:
    row = _row(session, user)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    for key, value in changes.items():
        setattr(row, key, value)
    log_activity(
        session,
        user.id,
        "preferences.update",
        "preferences",
        user.id,
        ip=ip,
        details={"fields": sorted(changes)},
    )
    session.commit()
    return get_preferences(session, user)


def list_widgets(session: Session, user: User) -> list[dict[str, Any]]:
    row = session.get(UserPreferences, user.id)
    saved = row.widgets if row else {}
    out = []
    for widget in WIDGET_CATALOG:
        item = _default_widget(widget)
        item.update(saved.get(widget.widget_id, {}))
        out.append(item)
    return out


def update_widget(
    session: Session, user: User, widget_id: str, data: WidgetUpdate, ip: str | None
) -> dict[str, Any]:
    if widget_id not in WIDGETS:
        raise NotFound(
            f"Unknown widget '{widget_id[:64]}'",
            details={"widget_id": widget_id[:64], "known": sorted(WIDGETS)},
        )
    row = _row(session, user)
    widgets = copy.deepcopy(row.widgets or {})
    current = widgets.get(widget_id, {})
    current.update(data.model_dump(mode="json", exclude_unset=True, exclude_none=True))
    widgets[widget_id] = current
    row.widgets = widgets  # a new object: JSON columns only notice reassignment
    log_activity(session, user.id, "preferences.widget_update", "widget", widget_id, ip=ip)
    session.commit()
    return next(w for w in list_widgets(session, user) if w["widget_id"] == widget_id)


# --- dashboard layouts -----------------------------------------------------------------------


def _ensure_default_layout(session: Session, user: User) -> None:
    """A new user starts with one layout: the default home dashboard."""
    if session.scalar(select(exists().where(DashboardLayout.user_id == user.id))):
        return
    session.add(
        DashboardLayout(
            user_id=user.id, name=DEFAULT_LAYOUT_NAME, layout_config=default_layout_config(), is_default=True
        )
    )
    session.commit()


def list_layouts(session: Session, user: User) -> list[DashboardLayout]:
    _ensure_default_layout(session, user)
    return list(
        session.scalars(
            select(DashboardLayout)
            .where(DashboardLayout.user_id == user.id)
            .order_by(DashboardLayout.created_at, DashboardLayout.id)
        )
    )


def get_layout(session: Session, user: User, layout_id: str) -> DashboardLayout:
    row = session.scalar(
        select(DashboardLayout).where(DashboardLayout.id == layout_id, DashboardLayout.user_id == user.id)
    )
    if row is None:
        raise NotFound("Dashboard layout not found", details={"layout_id": layout_id[:64]})
    return row


def _name_taken(session: Session, user: User, name: str, except_id: str | None = None) -> bool:
    query = select(exists().where(DashboardLayout.user_id == user.id, DashboardLayout.name == name))
    if except_id:
        query = select(
            exists().where(
                DashboardLayout.user_id == user.id,
                DashboardLayout.name == name,
                DashboardLayout.id != except_id,
            )
        )
    return bool(session.scalar(query))


def _make_only_default(session: Session, user: User, layout: DashboardLayout) -> None:
    session.execute(
        update(DashboardLayout)
        .where(DashboardLayout.user_id == user.id, DashboardLayout.id != layout.id)
        .values(is_default=False)
    )
    layout.is_default = True


def create_layout(
    session: Session, user: User, *, name: str, config: LayoutConfig, is_default: bool, ip: str | None
) -> DashboardLayout:
    _ensure_default_layout(session, user)
    if _name_taken(session, user, name):
        raise Conflict("A dashboard layout with this name already exists", field="name")
    row = DashboardLayout(
        user_id=user.id, name=name, layout_config=config.model_dump(mode="json"), is_default=False
    )
    session.add(row)
    session.flush()
    if is_default:
        _make_only_default(session, user, row)
    log_activity(session, user.id, "dashboard_layout.create", "dashboard_layout", row.id, ip=ip)
    session.commit()
    return row


def update_layout(
    session: Session,
    user: User,
    layout_id: str,
    *,
    name: str | None,
    config: LayoutConfig | None,
    is_default: bool | None,
    ip: str | None,
) -> DashboardLayout:
    row = get_layout(session, user, layout_id)
    if name is not None and name != row.name:
        if _name_taken(session, user, name, except_id=row.id):
            raise Conflict("A dashboard layout with this name already exists", field="name")
        row.name = name
    if config is not None:
        row.layout_config = config.model_dump(mode="json")
    if is_default:
        _make_only_default(session, user, row)
    elif is_default is False:
        row.is_default = False
    log_activity(session, user.id, "dashboard_layout.update", "dashboard_layout", row.id, ip=ip)
    session.commit()
    return row


def clone_layout(
    session: Session, user: User, layout_id: str, *, name: str | None, ip: str | None
) -> DashboardLayout:
    source = get_layout(session, user, layout_id)
    if name is not None:
        if _name_taken(session, user, name):
            raise Conflict("A dashboard layout with this name already exists", field="name")
        new_name = name
    else:
        base = f"{source.name[:90]} (copy)"
        new_name, n = base, 2
        while _name_taken(session, user, new_name):
            new_name, n = f"{source.name[:85]} (copy {n})", n + 1
    row = DashboardLayout(
        user_id=user.id, name=new_name, layout_config=copy.deepcopy(source.layout_config), is_default=False
    )
    session.add(row)
    session.flush()
    log_activity(
        session,
        user.id,
        "dashboard_layout.clone",
        "dashboard_layout",
        row.id,
        ip=ip,
        details={"source": source.id},
    )
    session.commit()
    return row


def delete_layout(session: Session, user: User, layout_id: str, ip: str | None) -> None:
    row = get_layout(session, user, layout_id)
    session.delete(row)
    log_activity(session, user.id, "dashboard_layout.delete", "dashboard_layout", layout_id, ip=ip)
    session.commit()
