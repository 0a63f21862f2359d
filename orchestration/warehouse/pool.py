"""chDB connections: the one module that touches chDB (and its private API).

A ``Conn`` is one chDB connection = one ClickHouse session, with the settings the server changed
on it tracked; ``Warehouse`` owns the data folder: an anchor connection that keeps the engine up,
a LIFO pool for sessionless requests, the sessions (bounded), and the KILL connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any

import chdb

from orchestration.warehouse.errors import ClickHouseError, ch_error
from orchestration.warehouse.errors import parse_chdb_error as _parse_chdb_error

log = logging.getLogger("aetl.warehouse")
CHDB_VERSION: str = chdb.__version__


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Conn:
    """One chDB connection = one ClickHouse session, with what we changed on it tracked."""

    def __init__(self, path: str):
        self.chdb = chdb.connect(path)
        self.db = "default"  # current database on the connection
        self.base_db = "default"  # the session's own database (USE), restored after a request's `database`
        self.applied: dict[str, str] = {}  # settings set on behalf of URL parameters
        self.priors: dict[str, str | None] = {}  # value to restore (None: DEFAULT)
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.timeout = 60.0
        self.dirty = False  # state changed by the client (SET/USE/temp table): don't reuse as a pool conn

    def run(self, query: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> Any:
        try:
            return self.chdb._conn.query(query, fmt, params=params or {})
        except RuntimeError as exc:
            self.flush()
            raise _parse_chdb_error(exc) from None

    def start_stream(self, query: str, fmt: str, params: dict[str, str]) -> Any:
        """A streaming query (chDB's send_query); chunks come from fetch()."""
        try:
            return self.chdb._conn.send_query(query, fmt, params=params)
        except RuntimeError as exc:
            raise _parse_chdb_error(exc) from None

    def fetch(self, stream: Any) -> Any:
        """The next chunk of a streaming query (None or an empty result at the end)."""
        try:
            return self.chdb._conn.streaming_fetch_result(stream)
        except RuntimeError as exc:
            raise _parse_chdb_error(exc) from None

    def cancel_stream(self, stream: Any) -> None:
        with contextlib.suppress(Exception):
            self.chdb._conn.streaming_cancel_query(stream)

    def start_insert(self, statement: str, fmt: str) -> Any:
        """A streaming insert: append(bytes)… then finish() (or cancel())."""
        try:
            return self.chdb.send_insert(statement, fmt)
        except RuntimeError as exc:
            raise _parse_chdb_error(exc) from None

    def flush(self) -> None:
        """chDB 4.4 prepends a failed query's partial output to the next answer: swallow it."""
        with contextlib.suppress(Exception):
            self.chdb._conn.query("SELECT 1", "TabSeparated")

    def use_database(self, db: str) -> None:
        if db != self.db:
            self.run(f"USE {quote_ident(db)}")
            self.db = db

    def apply_settings(self, wanted: dict[str, str]) -> None:
        """SET the request's settings, restore the ones the previous request set (lazily)."""
        for name in [n for n in self.applied if n not in wanted]:
            prior = self.priors.get(name)
            self.run(f"SET {quote_ident(name)} = {'DEFAULT' if prior is None else quote_literal(prior)}")
            del self.applied[name]
        new = [n for n in wanted if n not in self.priors]
        if new:
            names = ", ".join(quote_literal(n) for n in new)
            res = self.run(
                f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})", "JSONCompact"
            )
            for name, value, changed in json.loads(res.bytes())["data"]:
                self.priors[name] = value if int(changed) else None
        for name, value in wanted.items():
            if self.applied.get(name) == value:
                continue
            if name not in self.priors:
                raise ch_error(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            self.run(f"SET {quote_ident(name)} = {quote_literal(value)}")
            self.applied[name] = value

    def reset_tracking(self) -> None:
        """Before a client's own SET: put URL overrides back, forget cached priors."""
        self.apply_settings({})
        self.priors.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.chdb.close()


class Warehouse:
    """Owns the data folder: an anchor connection, the pool, the sessions."""

    def __init__(self, data_dir: str, max_pool: int = 64, max_sessions: int = 256):
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.abspath(data_dir)
        self.anchor = Conn(self.path)  # keeps the engine up while sessions come and go
        self.tmp_dir = os.path.join(
            self.path, "tmp"
        )  # the engine's temp folder: big insert bodies spill here
        os.makedirs(self.tmp_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._idle: list[Conn] = []
        self._slots = threading.BoundedSemaphore(max_pool)
        self.sessions: dict[str, Conn] = {}
        self.max_sessions = max_sessions  # each session holds a chDB connection: bound them
        self._closed = threading.Event()
        self._active = 0
        self._killer: Conn | None = None
        self._killer_lock = threading.Lock()
        info = self.anchor.run("SELECT version(), timezone(), hostName()", "JSONCompact")
        self.version, self.timezone, self.hostname = json.loads(info.bytes())["data"][0]
        self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
        self._reaper.start()

    def names(self, query: str) -> frozenset[str]:
        """One column of the engine's own catalogue (table functions, engines) as a set."""
        return frozenset(self.anchor.run(query, "TabSeparatedRaw").bytes().decode().split())

    def kill(self, tag: str) -> None:
        """KILL the query whose text carries ``aetl-cancel:<tag>`` (chDB lists them in system.processes)."""
        with self._killer_lock:
            if self._killer is None:
                self._killer = Conn(self.path)
            # concat() so this KILL's own text does not match the pattern
            with contextlib.suppress(ClickHouseError):
                self._killer.run(
                    "KILL QUERY WHERE position(query, concat('aetl-cancel:', "
                    f"{quote_literal(tag)})) > 0 ASYNC"
                )

    # -- in-flight requests (shutdown waits for them before closing connections) ---------------
    def begin(self) -> None:
        with self._lock:
            if self._closed.is_set():
                raise ch_error(236, "ABORTED", "Server is shutting down")
            self._active += 1

    def end(self) -> None:
        with self._lock:
            self._active -= 1

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(0.05)
        return False

    # -- pool --------------------------------------------------------------------------------
    def acquire(self) -> Conn:
        if not self._slots.acquire(timeout=300):
            raise ch_error(202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous queries")
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return Conn(self.path)
        except Exception:
            self._slots.release()
            raise

    def release(self, conn: Conn) -> None:
        if conn.dirty or self._closed.is_set():
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        self._slots.release()

    # -- sessions ----------------------------------------------------------------------------
    def session(self, session_id: str, timeout: float, check: bool) -> Conn:
        """The session's connection, locked for this request (SESSION_IS_LOCKED if busy)."""
        with self._lock:
            conn = self.sessions.get(session_id)
            if conn is None:
                if check:
                    raise ch_error(372, "SESSION_NOT_FOUND", f"Session {session_id} not found")
                if len(self.sessions) >= self.max_sessions:
                    raise ch_error(
                        700,
                        "USER_SESSION_LIMIT_EXCEEDED",
                        f"Too many open sessions ({self.max_sessions}, AETL_WAREHOUSE_MAX_SESSIONS); "
                        "close idle ones or wait for their session_timeout",
                    )
                conn = Conn(self.path)
                self.sessions[session_id] = conn
            if not conn.lock.acquire(blocking=False):
                raise ch_error(
                    373, "SESSION_IS_LOCKED", f"Session {session_id} is locked by a concurrent client"
                )
            conn.timeout = timeout
            return conn

    def release_session(self, conn: Conn) -> None:
        conn.last_used = time.monotonic()
        conn.lock.release()

    def _reap(self) -> None:
        while not self._closed.wait(1.0):
            now = time.monotonic()
            expired: list[Conn] = []
            with self._lock:
                for sid, conn in list(self.sessions.items()):
                    if now - conn.last_used > conn.timeout and conn.lock.acquire(blocking=False):
                        del self.sessions[sid]
                        expired.append(conn)
            for conn in expired:
                conn.close()

    def close(self, grace: float = 30.0) -> None:
        with self._lock:
            self._closed.set()
        if not self.wait_idle(grace):
            log.warning("closing with requests still running after %.0fs", grace)
        with self._lock:
            conns = self._idle + list(self.sessions.values())
            self._idle = []
            self.sessions = {}
        for conn in conns:
            conn.close()
        with self._killer_lock:
            if self._killer is not None:
                self._killer.close()
        self.anchor.close()
