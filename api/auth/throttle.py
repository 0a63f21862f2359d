"""Failed logins and 2FA codes: per account and per address, a temporary lock-out after too many.

Counters live in the rate-limit storage (`AETL_RATE_LIMIT_STORAGE`), moving windows of
`AETL_LOGIN_LOCKOUT_SECONDS`: after the limit, every attempt is refused (even a right password)
until the oldest failure in the window has aged out.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.core.config import Settings, get_settings
from api.core.errors import RateLimitExceeded

ACCOUNT, ADDRESS = "login-failures-account", "login-failures-address"


class FailedAttempts:
    def __init__(self, settings: Settings) -> None:
        self.limiter = MovingWindowRateLimiter(
            storage_from_string(settings.rate_limit_storage or "memory://")
        )
        seconds = settings.login_lockout_seconds
        self.items = {
            ACCOUNT: RateLimitItemPerSecond(settings.login_max_failures_per_account, seconds),
            ADDRESS: RateLimitItemPerSecond(settings.login_max_failures_per_address, seconds),
        }

    def _keys(self, account: str, address: str | None) -> list[tuple[str, str]]:
        return [(ACCOUNT, account.lower()), (ADDRESS, address or "unknown")]

    def ensure_allowed(self, account: str, address: str | None) -> None:
        """429 while the account or the address is locked out."""
        for kind, key in self._keys(account, address):
            item = self.items[kind]
            if not self.limiter.test(item, kind, key):
                reset = self.limiter.get_window_stats(item, kind, key).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                scope = "account" if kind == ACCOUNT else "address"
                raise RateLimitExceeded(
                    f"Too many failed attempts for this {scope}; try again in {wait} s",
                    details={
                        "reason": "too_many_failed_attempts",
                        "scope": scope,
                        "retry_after_seconds": wait,
                    },
                    headers={"Retry-After": str(wait)},
                )

    def record_failure(self, account: str, address: str | None) -> None:
        for kind, key in self._keys(account, address):
            self.limiter.hit(self.items[kind], kind, key)


_counters: dict[int, FailedAttempts] = {}


def failed_attempts() -> FailedAttempts:
    """The counters of the process's one settings object."""
    settings = get_settings()
    if id(settings) not in _counters:
        _counters[id(settings)] = FailedAttempts(settings)
    return _counters[id(settings)]
