"""Compatibility: the auth service moved to api.auth.service."""

from api.auth.service import Principal, resolve_principal

__all__ = ["Principal", "resolve_principal"]
