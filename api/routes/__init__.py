"""Compatibility: the error-response tables moved to api.core.responses (domains live in api/<domain>/)."""

from api.core.responses import BAD_REQUEST, CONFLICT, ERROR_RESPONSES, NOT_FOUND, Responses

__all__ = ["BAD_REQUEST", "CONFLICT", "ERROR_RESPONSES", "NOT_FOUND", "Responses"]
