"""/api/v1/preferences and /api/v1/dashboards/layouts (aggregator spec: envelope bodies).

Every route acts on the caller's own rows only; the permission table decides which of them a
role may call at all (`preferences.*`, `dashboards.*`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from api.auth.service import Principal
from api.core.responses import CONFLICT, ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, MessageEnvelope, ok
from api.deps import ClientIP, SessionDep, require_permission
from api.preferences import service
from api.preferences.schemas import (
    LayoutClone,
    LayoutCreate,
    LayoutPublic,
    LayoutUpdate,
    Preferences,
    PreferencesUpdate,
    WidgetPreference,
    WidgetUpdate,
)

preferences_router = APIRouter(prefix="/preferences", tags=["preferences"], responses=ERROR_RESPONSES)
dashboards_router = APIRouter(prefix="/dashboards", tags=["dashboards"], responses=ERROR_RESPONSES)

CanViewPreferences = Annotated[Principal, Depends(require_permission("preferences", "view"))]
CanEditPreferences = Annotated[Principal, Depends(require_permission("preferences", "edit"))]
CanViewDashboards = Annotated[Principal, Depends(require_permission("dashboards", "view"))]
CanCreateDashboards = Annotated[Principal, Depends(require_permission("dashboards", "create"))]
CanEditDashboards = Annotated[Principal, Depends(require_permission("dashboards", "edit"))]
CanDeleteDashboards = Annotated[Principal, Depends(require_permission("dashboards", "delete"))]
LayoutId = Annotated[str, Path(max_length=64)]
WidgetId = Annotated[str, Path(max_length=64)]


def _layout(row: object) -> dict[str, object]:
    return LayoutPublic.model_validate(row).model_dump(mode="json")


@preferences_router.get("", response_model=Envelope[Preferences])
def get_preferences(principal: CanViewPreferences, session: SessionDep) -> object:
    """The caller's preferences (defaults until changed: light theme, en, UTC, notifications on)."""
    return ok(
        Preferences.model_validate(service.get_preferences(session, principal.user)).model_dump(mode="json")
    )


@preferences_router.put("", response_model=Envelope[Preferences])
def update_preferences(
    body: PreferencesUpdate, principal: CanEditPreferences, session: SessionDep, ip: ClientIP
) -> object:
    data = service.update_preferences(session, principal.user, body, ip)
    return ok(Preferences.model_validate(data).model_dump(mode="json"), "Preferences updated")


@preferences_router.get("/widgets", response_model=Envelope[list[WidgetPreference]])
def list_widgets(principal: CanViewPreferences, session: SessionDep) -> object:
    """Every home-dashboard widget with the caller's settings over the defaults."""
    return ok(service.list_widgets(session, principal.user))


@preferences_router.put(
    "/widgets/{widget_id}", response_model=Envelope[WidgetPreference], responses=NOT_FOUND
)
def update_widget(
    widget_id: WidgetId, body: WidgetUpdate, principal: CanEditPreferences, session: SessionDep, ip: ClientIP
) -> object:
    return ok(service.update_widget(session, principal.user, widget_id, body, ip), "Widget updated")


@dashboards_router.get("/layouts", response_model=Envelope[list[LayoutPublic]])
def list_layouts(principal: CanViewDashboards, session: SessionDep) -> object:
    """The caller's layouts; a new user starts with the default one."""
    return ok([_layout(r) for r in service.list_layouts(session, principal.user)])


@dashboards_router.post(
    "/layouts", status_code=status.HTTP_201_CREATED, response_model=Envelope[LayoutPublic], responses=CONFLICT
)
def create_layout(
    body: LayoutCreate, principal: CanCreateDashboards, session: SessionDep, ip: ClientIP
) -> object:
    row = service.create_layout(
        session, principal.user, name=body.name, config=body.layout_config, is_default=body.is_default, ip=ip
    )
    return ok(_layout(row), "Dashboard layout created")


@dashboards_router.get("/layouts/{layout_id}", response_model=Envelope[LayoutPublic], responses=NOT_FOUND)
def get_layout(layout_id: LayoutId, principal: CanViewDashboards, session: SessionDep) -> object:
    return ok(_layout(service.get_layout(session, principal.user, layout_id)))


@dashboards_router.put(
    "/layouts/{layout_id}", response_model=Envelope[LayoutPublic], responses={**NOT_FOUND, **CONFLICT}
)
def update_layout(
    layout_id: LayoutId, body: LayoutUpdate, principal: CanEditDashboards, session: SessionDep, ip: ClientIP
) -> object:
    row = service.update_layout(
        session,
        principal.user,
        layout_id,
        name=body.name,
        config=body.layout_config,
        is_default=body.is_default,
        ip=ip,
    )
    return ok(_layout(row), "Dashboard layout updated")


@dashboards_router.post(
    "/layouts/{layout_id}/clone",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[LayoutPublic],
    responses={**NOT_FOUND, **CONFLICT},
)
def clone_layout(
    layout_id: LayoutId,
    principal: CanCreateDashboards,
    session: SessionDep,
    ip: ClientIP,
    body: LayoutClone | None = None,
) -> object:
    row = service.clone_layout(session, principal.user, layout_id, name=body.name if body else None, ip=ip)
    return ok(_layout(row), "Dashboard layout cloned")


@dashboards_router.delete("/layouts/{layout_id}", response_model=MessageEnvelope, responses=NOT_FOUND)
def delete_layout(
    layout_id: LayoutId, principal: CanDeleteDashboards, session: SessionDep, ip: ClientIP
) -> object:
    service.delete_layout(session, principal.user, layout_id, ip)
    return {"status": "success", "message": "Dashboard layout deleted", "data": {"layout_id": layout_id}}
