"""Who may talk to the warehouse: the platform's own user with its password, and no browser.

Credentials are read the three ways ClickHouse reads them over HTTP (Basic auth,
``X-ClickHouse-User``/``X-ClickHouse-Key``, ``user``/``password`` URL parameters) and compared in
constant time; a failure is ClickHouse's own ``AUTHENTICATION_FAILED`` (516, HTTP 401).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from orchestration.warehouse.errors import ClickHouseError, ch_error


class Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class PlatformUser:
    name: str
    password: str = field(repr=False)


def presented_credentials(headers: Headers, params: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) the request presents; ClickHouse's defaults are user ``default``, no password."""
    authorization = headers.get("Authorization") or ""
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        user, _, password = decoded.partition(":")
        return user, password
    if headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
        return headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key") or ""
    return params.get("user") or "default", params.get("password") or ""


def authentication_failed(user: str) -> ClickHouseError:
    shown = user if user.isprintable() and len(user) <= 64 else "<user>"
    return ch_error(
        516,
        "AUTHENTICATION_FAILED",
        f"{shown}: Authentication failed: password is incorrect, or there is no user with such name",
    )


def matches(user: PlatformUser, name: str, password: str) -> bool:
    """Constant time in the password (and the name): no timing tells how much of it was right."""
    name_ok = hmac.compare_digest(name.encode("utf-8", "surrogatepass"), user.name.encode())
    password_ok = hmac.compare_digest(password.encode("utf-8", "surrogatepass"), user.password.encode())
    return name_ok and password_ok


def authenticate(user: PlatformUser, headers: Headers, params: Mapping[str, str]) -> None:
    name, password = presented_credentials(headers, params)
    if not matches(user, name, password):
        raise authentication_failed(name)


def browser_refused() -> ClickHouseError:
    return ch_error(
        497,
        "ACCESS_DENIED",
        "Requests from web browsers (with an Origin header) are not accepted by this server",
    )
