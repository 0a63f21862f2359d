"""A small ClickHouse SQL lexer: just enough to split a request into statement and data.

The server needs to know (without a full parser) where an ``INSERT ... FORMAT X`` statement
ends and its data begins, which ``FORMAT`` clause a query carries, whether a body holds several
statements, and which literals are not UTF-8. It works on ``str`` decoded as latin-1 so every
character position is a byte position of the original request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Statements that answer with a result set (and so get X-ClickHouse-Format).
RESULT_KEYWORDS = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "CHECK", "VALUES"}
)
# Statements chDB can stream with send_query(); the rest run as a plain query.
STREAMABLE_KEYWORDS = frozenset({"SELECT", "WITH"})

_WORD_RE = re.compile(r"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
_NUMBER_RE = re.compile(r"[0-9][0-9A-Za-z_.]*")
_HEREDOC_RE = re.compile(r"\$([A-Za-z0-9_]*)\$")


@dataclass(frozen=True)
class Token:
    kind: str  # word | string | quoted_ident | heredoc | number | punct | space | comment | error
    start: int
    end: int


def tokens(text: str, start: int = 0) -> Iterator[Token]:
    """Yield tokens of ``text`` (latin-1 decoded) from ``start``; unterminated constructs yield 'error'."""
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n\f\v":
            j = i + 1
            while j < n and text[j] in " \t\r\n\f\v":
                j += 1
            yield Token("space", i, j)
            i = j
        elif text.startswith("--", i) or c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j + 1
            yield Token("comment", i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            yield Token("comment" if depth == 0 else "error", i, j)
            i = j
        elif c in "'\"`":
            j = i + 1
            closed = False
            while j < n:
                ch = text[j]
                if ch == "\\":
                    j += 2
                    continue
                if ch == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    closed = True
                    j += 1
                    break
                j += 1
            kind = {"'": "string", '"': "quoted_ident", "`": "quoted_ident"}[c]
            yield Token(kind if closed else "error", i, min(j, n))
            i = min(j, n)
        elif c == "$" and (m := _HEREDOC_RE.match(text, i)):
            tag = m.group(0)
            j = text.find(tag, m.end())
            if j < 0:
                yield Token("error", i, n)
                return
            yield Token("heredoc", i, j + len(tag))
            i = j + len(tag)
        elif m := _WORD_RE.match(text, i):
            yield Token("word", i, m.end())
            i = m.end()
        elif m := _NUMBER_RE.match(text, i):
            yield Token("number", i, m.end())
            i = m.end()
        else:
            yield Token("punct", i, i + 1)
            i += 1


def _significant(text: str, start: int = 0) -> Iterator[Token]:
    for t in tokens(text, start):
        if t.kind not in ("space", "comment"):
            yield t


def significant_tokens(text: str, start: int = 0) -> Iterator[Token]:
    """Tokens without spaces and comments."""
    return _significant(text, start)


def unquote_literal(raw: str) -> str:
    """The value of a quoted string literal as ClickHouse writes it (``'a\\'b'`` → ``a'b``)."""
    return _unquote_string(raw.encode("utf-8")).decode("utf-8", errors="replace")


def first_keyword(text: str) -> str:
    """The statement's leading keyword, upper-cased ('' if none); '(' counts as SELECT."""
    for t in _significant(text):
        if t.kind == "word":
            return text[t.start : t.end].upper()
        if t.kind == "punct" and text[t.start] == "(":
            return "SELECT"
        return ""
    return ""


@dataclass
class InsertSplit:
    """An ``INSERT ... FORMAT X`` head: statement without FORMAT, the format, where data starts."""

    statement: str
    fmt: str
    data_start: int


def leading_with_insert(text: str) -> int | None:
    """Position of the INSERT in ``WITH … INSERT INTO …`` (a WITH clause before an insert), else None."""
    depth = 0
    for t in _significant(text):
        if t.kind == "error":
            return None
        if t.kind == "punct":
            ch = text[t.start]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == ";" and depth == 0:
                return None
            continue
        if t.kind == "word" and depth == 0:
            word = text[t.start : t.end].upper()
            if word == "INSERT":
                return t.start
            if word in ("SELECT", "FORMAT", "SETTINGS"):
                return None
    return None


def split_insert_format(text: str, start: int = 0) -> InsertSplit | None | bool:
    """Locate ``FORMAT <name>`` of an INSERT in ``text`` (a prefix of the request).

    Returns the split, ``None`` if the INSERT has no FORMAT clause (VALUES/SELECT: run it as a
    query), or ``False`` if the prefix is too short to tell yet.
    """
    depth = 0
    prev_word = ""
    it = _significant(text, start)
    for t in it:
        if t.kind == "error":
            return False
        if t.kind == "punct":
            ch = text[t.start]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            prev_word = ""
            continue
        if t.kind != "word":
            prev_word = ""
            continue
        word = text[t.start : t.end].upper()
        if depth == 0 and word in ("VALUES", "SELECT", "WITH") and prev_word != "FORMAT":
            return None
        if depth == 0 and word == "FORMAT":
            name_tok = next(it, None)
            if name_tok is None:
                return False
            if name_tok.kind != "word":
                return None
            if name_tok.end >= len(text):
                return False  # the name may continue in the next chunk
            pos = name_tok.end
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos < len(text) and text[pos] == "\r":
                pos += 1
            if pos < len(text) and text[pos] == "\n":
                pos += 1
            return InsertSplit(text[: t.start].rstrip(), text[name_tok.start : name_tok.end], pos)
        prev_word = word
    return False


def strip_format(text: str) -> tuple[str, str | None]:
    """Remove a top-level ``FORMAT <name>`` clause from a query; return (query, format or None)."""
    depth = 0
    toks = list(_significant(text))
    for k, t in enumerate(toks):
        if t.kind == "punct":
            ch = text[t.start]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            continue
        if (
            depth == 0
            and t.kind == "word"
            and text[t.start : t.end].upper() == "FORMAT"
            and k + 1 < len(toks)
            and toks[k + 1].kind == "word"
            and (k + 2 >= len(toks) or not (toks[k + 2].kind == "punct" and text[toks[k + 2].start] == "("))
        ):
            name = toks[k + 1]
            return text[: t.start] + " " + text[name.end :], text[name.start : name.end]
    return text, None


def check_single_statement(text: str) -> tuple[str, int | None]:
    """Drop trailing ';' and return (text, None), or (text, position) of a second statement."""
    last_semicolon = None
    for t in _significant(text):
        if t.kind == "punct" and text[t.start] == ";":
            if last_semicolon is None:
                last_semicolon = t.start
            continue
        if last_semicolon is not None:
            return text, t.start
    if last_semicolon is not None:
        return text[:last_semicolon], None
    return text, None


_ESCAPES = {"b": 8, "f": 12, "r": 13, "n": 10, "t": 9, "0": 0, "a": 7, "v": 11, "e": 27}


def _unquote_string(raw: bytes) -> bytes:
    """Bytes value of a quoted SQL string literal (backslash escapes and doubled quotes)."""
    quote, body = raw[0], raw[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        b = body[i]
        if b == 0x5C and i + 1 < len(body):  # backslash
            nxt = chr(body[i + 1])
            if nxt == "x" and i + 3 < len(body):
                try:
                    out.append(int(body[i + 2 : i + 4].decode("ascii"), 16))
                    i += 4
                    continue
                except ValueError:
                    pass
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            else:
                out.append(body[i + 1])
            i += 2
        elif b == quote and i + 1 < len(body) and body[i + 1] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def to_str(raw: bytes) -> str:
    """Decode a statement; literals that are not UTF-8 become ``unhex('..')`` (chDB takes str only)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = raw.decode("latin-1")
    parts: list[str] = []
    pos = 0
    for t in tokens(text):
        if t.kind not in ("string", "heredoc"):
            continue
        chunk = raw[t.start : t.end]
        try:
            chunk.decode("utf-8")
            continue
        except UnicodeDecodeError:
            pass
        if t.kind == "string":
            value = _unquote_string(chunk)
        else:
            tag_len = chunk.index(b"$", 1) + 1
            value = chunk[tag_len:-tag_len]
        parts.append(raw[pos : t.start].decode("utf-8", errors="replace"))
        parts.append(f"unhex('{value.hex()}')")
        pos = t.end
    parts.append(raw[pos:].decode("utf-8", errors="replace"))
    return "".join(parts)


def for_log(query: str, limit: int = 200) -> str:
    """One-line query text for the log: literals masked first (they may hold secrets), then cut.

    Masking works on tokens, so a literal cut by the limit, or never closed, is masked too.
    """
    out: list[str] = []
    size = 0
    for t in tokens(query):
        if t.kind in ("string", "heredoc", "error"):
            piece = "'…'"
        elif t.kind in ("space", "comment"):
            piece = " "
        else:
            piece = query[t.start : t.end]
        if piece == " " and (not out or out[-1] == " "):
            continue
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    line = "".join(out).strip()
    return line[:limit] + ("…" if len(line) > limit else "")
