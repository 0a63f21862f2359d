"""ClickHouse-style errors: code, name, message, and the HTTP status ClickHouse gives each."""

from __future__ import annotations


class ClickHouseError(Exception):
    """An error answered the way ClickHouse answers it: code, name and message."""

    def __init__(self, code: int, message: str, name: str | None = None):
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message


# ClickHouse's own mapping of error codes (by name) to HTTP statuses (HTTPHandler).
STATUS_BY_NAME: dict[str, int] = {
    **dict.fromkeys(
        (
            "UNKNOWN_USER",
            "WRONG_PASSWORD",
            "REQUIRED_PASSWORD",
            "AUTHENTICATION_FAILED",
            "SET_NON_GRANTED_ROLE",
        ),
        401,
    ),
    "ACCESS_DENIED": 403,
    **dict.fromkeys(
        (
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
            "CANNOT_READ_ALL_DATA",
            "INCORRECT_NUMBER_OF_COLUMNS",
            "BAD_ARGUMENTS",
            "UNKNOWN_PACKET_FROM_CLIENT",
            "CANNOT_DECOMPRESS",
            "INVALID_SESSION_TIMEOUT",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
            "SESSION_NOT_FOUND",
        ),
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 500,
}


def parse_chdb_error(exc: BaseException) -> ClickHouseError:
    """chDB raises ``Code: N. DB::Exception: ... (NAME)``; keep code and text."""
    if isinstance(exc, ClickHouseError):
        return exc
    text = str(exc)
    for prefix in (
        "Streaming query failed: ",
        "Streaming insert append failed: ",
        "Streaming insert finish failed: ",
    ):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    idx = text.find("Code: ")
    if idx >= 0:
        rest = text[idx + 6 :]
        num = rest.split(".", 1)[0]
        if num.isdigit():
            msg = text[idx:].strip()
            name = None
            if msg.endswith(")") and "(" in msg:
                cand = msg[msg.rindex("(") + 1 : -1]
                if cand.isupper() or "_" in cand:
                    name = cand
            return ClickHouseError(int(num), msg, name)
    return ClickHouseError(1001, f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)", "STD_EXCEPTION")


def ch_error(code: int, name: str, text: str) -> ClickHouseError:
    return ClickHouseError(code, f"Code: {code}. DB::Exception: {text}. ({name})", name)


def http_status(err: ClickHouseError) -> int:
    return STATUS_BY_NAME.get(err.name or "UNKNOWN", 500)


def internal_error(query_id: str) -> ClickHouseError:
    """A bug of this server: the client gets a code and the query id, the log gets the traceback."""
    return ch_error(
        1001,
        "STD_EXCEPTION",
        f"Internal error of the warehouse server while running query {query_id}; "
        "the details are in the server log",
    )
