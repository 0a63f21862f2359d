"""Helpers of the datamarts tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Caller:
    role: str
    headers: dict[str, str]
