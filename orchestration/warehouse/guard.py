"""What a statement may reach: the warehouse's own tables, never the host's files (outside the
configured roots), URLs, processes or other servers.

The decision comes from ClickHouse's own parse of the statement (``EXPLAIN AST``, run by the
pool on a chDB connection), not from its first keyword: a ``file()`` hidden in a CTE, a view, a
``DESCRIBE`` or an ``INSERT INTO FUNCTION`` is found wherever it is. A few things the AST text
does not spell out (``INTO OUTFILE``, ``SYSTEM`` verbs, dictionary source keys, setting names)
are read from the statement's tokens (sql.py's lexer). ``readonly`` is decided the same way.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.warehouse import sql
from orchestration.warehouse.auth import authentication_failed
from orchestration.warehouse.errors import ClickHouseError, ch_error

# Table functions that only compute or read this warehouse's own tables (lower case).
LOCAL_TABLE_FUNCTIONS = frozenset(
    {
        "numbers", "numbers_mt", "zeros", "zeros_mt", "generaterandom", "generateseries",
        "generate_series", "values", "view", "viewifpermitted", "viewexplain", "merge", "null",
        "input", "format", "dictionary", "loop", "primes", "mergetreeindex", "mergetreeprojection",
        "mergetreeanalyzeindexes", "mergetreeanalyzeindexesuuid", "mergetreecodecblockcounts",
        "mergetreetextindex",
    }
)  # fmt: skip
# Table functions known to reach outside (used when the engine's own list is not at hand).
REACHING_TABLE_FUNCTIONS = frozenset(
    {
        "file", "filecluster", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn", "hdfs",
        "hdfscluster", "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql",
        "jdbc", "odbc", "executable", "azureblobstorage", "azureblobstoragecluster", "sqlite", "mongodb",
        "redis", "python", "arrowstream", "filesystem", "bigquery", "ytsaurus", "iceberg", "deltalake",
        "hudi", "paimon", "prometheusquery", "prometheusqueryrange", "eval",
    }
)  # fmt: skip
# Table and database engines that keep data in this warehouse's own folder (lower case).
LOCAL_ENGINES = frozenset(
    {
        "mergetree", "replacingmergetree", "summingmergetree", "aggregatingmergetree",
        "collapsingmergetree", "versionedcollapsingmergetree", "graphitemergetree",
        "coalescingmergetree", "log", "tinylog", "stripelog", "memory", "null", "set", "join", "buffer",
        "dictionary", "merge", "generaterandom", "view", "materializedview", "embeddedrocksdb",
        "atomic", "ordinary",
    }
)  # fmt: skip
# Scalar functions that read files named by the caller (file() is checked against the roots).
REACHING_SCALAR_FUNCTIONS = frozenset({"catboostevaluate"})
# SYSTEM verbs that only touch this warehouse's own state.
ALLOWED_SYSTEM = (
    ("RELOAD", "DICTIONARY"),
    ("RELOAD", "DICTIONARIES"),
    ("STOP", "MERGES"),
    ("START", "MERGES"),
    ("STOP", "TTL"),
    ("START", "TTL"),
    ("DROP", "MARK"),
    ("DROP", "UNCOMPRESSED"),
    ("DROP", "QUERY"),
    ("FLUSH", "LOGS"),
)
# Settings whose value names a file the engine would open.
PATH_SETTINGS = frozenset(
    {"format_schema", "format_template_resultset", "format_template_row", "format_schema_source"}
)
# Settings whose value names a file the engine writes: only inside the quarantine folder.
WRITE_PATH_SETTINGS = frozenset({"input_format_record_errors_file_path"})
READ_ONLY_ROOT_PREFIXES = ("Select", "Show", "Describe", "Exists", "Explain", "Check")
GLOB_CHARACTERS = frozenset("*?{}[]")
LOCAL_CLICKHOUSE_PORT = 9000  # chDB serves HOST 'localhost' PORT 9000 in process, with no network


@dataclass
class AstNode:
    """One line of ``EXPLAIN AST``: ``Function file (children 1)`` → kind Function, name file."""

    text: str
    depth: int
    parent: AstNode | None = None
    children: list[AstNode] = field(default_factory=list)

    @property
    def kind(self) -> str:
        for multi in ("Storage definition", "Dictionary definition", "Columns definition", "SYSTEM query"):
            if self.text.startswith(multi):
                return multi
        return self.text.split(" ", 1)[0]

    @property
    def name(self) -> str:
        rest = self.text[len(self.kind) :].strip()
        return rest.split(" (", 1)[0].strip()

    def walk(self) -> Iterator[AstNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def parse_explain_ast(text: str) -> AstNode:
    """The tree of ``EXPLAIN AST`` output (one node per line, one space of indent per level)."""
    root: AstNode | None = None
    stack: list[AstNode] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if body.endswith(")") and " (children " in body:
            body = body[: body.rindex(" (children ")]
        node = AstNode(body, depth)
        while stack and stack[-1].depth >= depth:
            stack.pop()
        if stack:
            node.parent = stack[-1]
            stack[-1].children.append(node)
        elif root is None:
            root = node
        stack.append(node)
    if root is None:
        raise ch_error(62, "SYNTAX_ERROR", "Empty query")
    return root


@dataclass(frozen=True)
class Policy:
    """What the platform's user may reach: file() under ``file_roots``; this warehouse's own user."""

    file_roots: tuple[Path, ...]
    # where rows that fail to parse may be written (input_format_record_errors_file_path)
    reject_root: Path | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    table_functions: frozenset[str] = REACHING_TABLE_FUNCTIONS | LOCAL_TABLE_FUNCTIONS
    engines: frozenset[str] = frozenset()

    @staticmethod
    def roots_from(setting: str, data_root: Path) -> tuple[Path, ...]:
        """AETL_WAREHOUSE_FILE_ROOTS (os.pathsep-separated), default ``$AETL_DATA_DIR/imports``."""
        names = [p for p in setting.split(os.pathsep) if p.strip()] or [str(data_root / "imports")]
        return tuple(Path(os.path.realpath(p)) for p in names)


def denied(what: str) -> ClickHouseError:
    return ch_error(497, "ACCESS_DENIED", f"{what} is not allowed in this warehouse")


def is_read_only(root: AstNode) -> bool:
    return root.kind.startswith(READ_ONLY_ROOT_PREFIXES)


@dataclass
class Verdict:
    """The parsed statement, and its text to run (a self-referencing dictionary loses its password)."""

    root: AstNode
    text: str


def inspect(statement: str, ast_text: str, policy: Policy) -> Verdict:
    """Refuse what reaches outside (ACCESS_DENIED, 497); return the statement to run."""
    root = parse_explain_ast(ast_text)
    _check_tokens(statement, policy)
    for node in root.walk():
        if node.kind == "Function":
            _check_function(node, policy)
        elif node.kind == "Storage definition":
            _check_engine(node, policy)
        elif node.kind == "FunctionWithKeyValueArguments" and _is_dictionary_source(node):
            if node.name.lower() != "clickhouse":
                raise denied(f"Dictionary source {node.name.upper()}")
        elif node.kind == "SYSTEM query":
            _check_system(statement)
        elif node.kind == "BackupQuery":
            raise denied("BACKUP/RESTORE")
        elif node.kind == "AttachQuery" and _attach_from_path(statement):
            raise denied("ATTACH … FROM a path")
        elif (
            node.kind == "Literal"
            and node.parent is root
            and root.kind in ("SelectWithUnionQuery", "InsertQuery")
        ):
            raise denied("INTO OUTFILE / FROM INFILE")
    text = statement
    if any(n.kind == "Dictionary definition" for n in root.walk()):
        text = _self_dictionary_source(statement, policy)
    return Verdict(root, text)


def check_settings(settings: Iterable[tuple[str, str]], policy: Policy) -> None:
    """URL settings and SET/SETTINGS values that name files (format schemas, templates, error files)."""
    for name, value in settings:
        if name.lower() in PATH_SETTINGS and ("/" in value or ".." in value):
            raise denied(f"Setting {name} with a path")
        if name.lower() in WRITE_PATH_SETTINGS and value and not _inside_reject_root(value, policy):
            raise denied(f"Setting {name} outside the quarantine folder")


def _inside_reject_root(path: str, policy: Policy) -> bool:
    if policy.reject_root is None or not os.path.isabs(path) or ".." in Path(path).parts:
        return False
    real = Path(os.path.realpath(path))
    return real.parent == policy.reject_root or real.parent.is_relative_to(policy.reject_root)


def _check_tokens(statement: str, policy: Policy) -> None:
    toks: Sequence[sql.Token] = list(sql.significant_tokens(statement))  # once for every check here
    upper = {statement[t.start : t.end].upper() for t in toks if t.kind == "word"}
    if "OUTFILE" in upper:
        raise denied("INTO OUTFILE")
    if "INFILE" in upper:
        raise denied("FROM INFILE")
    _check_disk_definitions(statement, toks)
    check_settings(_assigned_settings(statement, toks), policy)


def _check_disk_definitions(statement: str, toks: Sequence[sql.Token]) -> None:
    """``SETTINGS disk = disk(type = web|s3|local, …)`` makes a storage reach a URL or a folder.

    EXPLAIN AST shows such a setting only as a bare ``Set`` node, so the call is found in the tokens:
    the word ``disk`` followed by ``(`` (inside a string literal it is not a token, so not matched).
    """
    for word, following in zip(toks, toks[1:], strict=False):
        if (
            word.kind == "word"
            and statement[word.start : word.end].lower() == "disk"
            and following.kind == "punct"
            and statement[following.start] == "("
        ):
            raise denied("Disk definitions (disk(...))")


def _check_function(node: AstNode, policy: Policy) -> None:
    name = node.name.lower()
    parent = node.parent.kind if node.parent is not None else ""
    if parent == "Storage definition":
        return  # an engine: checked by _check_engine
    as_table = parent in ("TableExpression", "InsertQuery", "CreateQuery", "BackupQuery")
    if name == "file":
        if parent in ("InsertQuery", "CreateQuery", "BackupQuery"):
            raise denied("Writing with file()")
        _check_file_path(node, policy)
        return
    if name in REACHING_SCALAR_FUNCTIONS:
        raise denied(f"Function {node.name}")
    if as_table and name not in LOCAL_TABLE_FUNCTIONS:
        raise denied(f"Table function {node.name}()")
    if name in policy.table_functions and name not in LOCAL_TABLE_FUNCTIONS:
        raise denied(f"Table function {node.name}()")


def _check_engine(storage: AstNode, policy: Policy) -> None:
    for child in storage.children:
        if child.kind != "Function":
            continue
        name = child.name.lower()
        if name in LOCAL_ENGINES:
            continue
        if name in policy.engines or name in REACHING_TABLE_FUNCTIONS or name in policy.table_functions:
            raise denied(f"Engine {child.name}")


def _is_dictionary_source(node: AstNode) -> bool:
    return node.parent is not None and node.parent.kind == "Dictionary definition"


def _check_file_path(node: AstNode, policy: Policy) -> None:
    args = node.children[0].children if node.children else []
    if not args or args[0].kind != "Literal" or not args[0].name.startswith("'"):
        raise denied("file() without a literal path")
    path = sql.unquote_literal(args[0].name)
    if not os.path.isabs(path):
        raise denied(f"file() with a relative path ({path!r})")
    if GLOB_CHARACTERS & set(path):
        raise denied("file() with a glob pattern")
    if ".." in Path(path).parts:
        raise denied("file() with '..' in its path")
    real = Path(os.path.realpath(path))
    if not any(real == root or real.is_relative_to(root) for root in policy.file_roots):
        roots = ", ".join(str(r) for r in policy.file_roots)
        raise denied(f"file() outside the import folders ({roots}): {path!r}")


def _check_system(statement: str) -> None:
    words = [w.upper() for w in _words(statement)]
    verb = tuple(words[1:3]) if words and words[0] == "SYSTEM" else ()
    if verb not in ALLOWED_SYSTEM:
        raise denied("SYSTEM " + " ".join(verb))


def _attach_from_path(statement: str) -> bool:
    previous = ""
    for token in sql.significant_tokens(statement):
        if token.kind == "string" and previous == "FROM":
            return True
        previous = statement[token.start : token.end].upper() if token.kind == "word" else ""
    return False


def _words(statement: str) -> list[str]:
    return [statement[t.start : t.end] for t in sql.significant_tokens(statement) if t.kind == "word"]


def _assigned_settings(statement: str, toks: Sequence[sql.Token]) -> Iterator[tuple[str, str]]:
    """``name = 'value'`` pairs anywhere in the statement (SET and SETTINGS clauses)."""
    for i in range(len(toks) - 2):
        name, eq, value = toks[i], toks[i + 1], toks[i + 2]
        if (
            name.kind == "word"
            and eq.kind == "punct"
            and statement[eq.start] == "="
            and value.kind == "string"
        ):
            yield statement[name.start : name.end], sql.unquote_literal(statement[value.start : value.end])


def _self_dictionary_source(statement: str, policy: Policy) -> str:
    """A CLICKHOUSE source must be this warehouse (no host, or localhost on chDB's in-process port).

    dbt-clickhouse writes the platform's user and password into the source; chDB checks them
    against its own (password-less) user, so a matching pair is taken out of the statement (and
    never stored in the dictionary's definition); any other pair is refused like a bad login.
    """
    toks = list(sql.significant_tokens(statement))
    words = [statement[t.start : t.end].upper() if t.kind == "word" else "" for t in toks]
    start = next(
        (i for i in range(len(toks) - 3) if words[i] == "SOURCE" and words[i + 2] == "CLICKHOUSE"), None
    )
    if start is None:
        return statement
    pairs: dict[str, tuple[int, int, str]] = {}
    i, depth = start + 4, 1
    while i < len(toks) and depth:
        tok = toks[i]
        if tok.kind == "punct" and statement[tok.start] in "()":
            depth += 1 if statement[tok.start] == "(" else -1
            i += 1
            continue
        if tok.kind == "word" and i + 1 < len(toks) and depth == 1:
            value_tok = toks[i + 1]
            raw = statement[value_tok.start : value_tok.end]
            value = sql.unquote_literal(raw) if value_tok.kind == "string" else raw
            pairs[words[i]] = (tok.start, value_tok.end, value)
            i += 2
            continue
        i += 1
    host = pairs.get("HOST", (0, 0, ""))[2]
    port = pairs.get("PORT", (0, 0, str(LOCAL_CLICKHOUSE_PORT)))[2]
    if host and (host.lower() not in ("localhost", "127.0.0.1", "::1") or port != str(LOCAL_CLICKHOUSE_PORT)):
        raise denied(f"Dictionary source CLICKHOUSE on another server ({host}:{port})")
    if "USER" not in pairs and "PASSWORD" not in pairs:
        return statement
    user = pairs.get("USER", (0, 0, policy.user))[2]
    user_ok = hmac.compare_digest(user.encode(), policy.user.encode())
    # no PASSWORD is fine: the statement itself came in authenticated, and the source stays in process
    password_ok = "PASSWORD" not in pairs or hmac.compare_digest(
        pairs["PASSWORD"][2].encode(), policy.password.encode()
    )
    if not (user_ok and password_ok):
        raise authentication_failed(user)
    cut = sorted((pairs[k][0], pairs[k][1]) for k in ("USER", "PASSWORD") if k in pairs)
    for begin, end in reversed(cut):
        statement = statement[:begin] + statement[end:]
    return statement
