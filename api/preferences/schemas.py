"""Preference and dashboard-layout bodies; every size is bounded (a huge document is a 422)."""

from __future__ import annotations

import json
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.core.schemas import RequestModel, ResponseModel, UTCDateTime

MAX_WIDGET_SETTINGS_BYTES = 8 * 1024
MAX_LAYOUT_CONFIG_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8
LANGUAGE_PATTERN = r"^[a-z]{2}(-[A-Z]{2})?$"
_TIMEZONES = frozenset(available_timezones())

Theme = Literal["light", "dark", "system"]


def _depth(value: Any, level: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def check_json_size(value: Any, limit: int, what: str) -> None:
    size = len(json.dumps(value, separators=(",", ":"), default=str))
    if size > limit:
        raise ValueError(f"{what} is {size} bytes; at most {limit} bytes")
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")


class Preferences(ResponseModel):
    user_id: str
    theme: Theme
    language: str
    timezone: str
    notifications_enabled: bool
    updated_at: UTCDateTime | None


class PreferencesUpdate(RequestModel):
    theme: Theme | None = None
    language: str | None = Field(None, pattern=LANGUAGE_PATTERN, max_length=5)
    timezone: str | None = Field(None, max_length=64)
    notifications_enabled: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            raise ValueError("unknown IANA time zone (e.g. UTC, Europe/Berlin)")
        return value


class WidgetPosition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int = Field(ge=0, le=1000)
    y: int = Field(ge=0, le=1000)


class WidgetSize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    w: int = Field(ge=1, le=24)
    h: int = Field(ge=1, le=24)


class WidgetPreference(ResponseModel):
    widget_id: str
    title: str
    visible: bool
    position: WidgetPosition
    size: WidgetSize
    settings: dict[str, Any]


class WidgetUpdate(RequestModel):
    visible: bool | None = None
    position: WidgetPosition | None = None
    size: WidgetSize | None = None
    settings: dict[str, Any] | None = None

    @field_validator("settings")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_json_size(value, MAX_WIDGET_SETTINGS_BYTES, "settings")
        return value


class LayoutWidget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    widget_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    x: int = Field(ge=0, le=1000)
    y: int = Field(ge=0, le=1000)
    w: int = Field(ge=1, le=24)
    h: int = Field(ge=1, le=24)
    settings: dict[str, Any] = Field(default_factory=dict)


class LayoutConfig(BaseModel):
    """A grid of widgets; other keys a client wants to keep are allowed within the size bound."""

    model_config = ConfigDict(extra="allow")
    columns: int = Field(12, ge=1, le=24)
    widgets: list[LayoutWidget] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _bounded(self) -> LayoutConfig:
        check_json_size(self.model_dump(mode="json"), MAX_LAYOUT_CONFIG_BYTES, "layout_config")
        return self


class LayoutCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    layout_config: LayoutConfig = Field(default_factory=LayoutConfig)
    is_default: bool = False


class LayoutUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    layout_config: LayoutConfig | None = None
    is_default: bool | None = None


class LayoutClone(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=100)


class LayoutPublic(ResponseModel):
    id: str
    user_id: str
    name: str
    layout_config: dict[str, Any]
    is_default: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime
