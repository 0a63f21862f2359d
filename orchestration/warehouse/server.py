"""The embedded warehouse: a ClickHouse HTTP protocol server over chDB.

One process owns the data folder (chDB allows one engine per process); clickhouse-connect,
dbt-clickhouse and any ClickHouse HTTP client talk to it as to a real ClickHouse.

    python -m orchestration.warehouse.server --host 127.0.0.1 --port 8123 --data-dir PATH

Design: a threaded stdlib HTTP/1.1 server (chDB releases the GIL while it works, so threads
run queries in parallel), one chDB connection per ``session_id`` and a pool of connections for
sessionless requests. See README.md in this folder for what is supported and measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestration.warehouse import guard
from orchestration.warehouse.auth import PlatformUser
from orchestration.warehouse.credentials import (
    PIPE_FOLDER,
    data_root,
    ensure_platform_password,
    is_loopback_host,
    password_file,
    platform_user,
)
from orchestration.warehouse.handler import Handler, _Keepalive
from orchestration.warehouse.pool import CHDB_VERSION, Warehouse
from orchestration.warehouse.recovery import repair_interrupted_moves

log = logging.getLogger("aetl.warehouse")


class WarehouseHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    warehouse: Warehouse

    def __init__(self, address: tuple[str, int], warehouse: Warehouse | None, platform_user: PlatformUser):
        if warehouse is not None:
            self.warehouse = warehouse
        self.platform_user = platform_user
        self.policy = guard.Policy(file_roots=(), user=platform_user.name, password=platform_user.password)
        self.max_multipart_bytes = int(os.environ.get("AETL_WAREHOUSE_MAX_MULTIPART_BYTES") or 256 << 20)
        self.keepalives: set[_Keepalive] = set()
        self.watched: dict[Handler, str] = {}  # read-only queries to KILL if their client hangs up
        self._ticking = threading.Event()
        super().__init__(address, Handler)
        threading.Thread(target=self._tick, name="progress-headers", daemon=True).start()

    def _tick(self) -> None:
        while not self._ticking.wait(0.1):
            now = time.monotonic()
            for keeper in list(self.keepalives):
                keeper.tick(now)
            for handler, tag in list(self.watched.items()):
                if handler._client_closed() and self.watched.pop(handler, None) is not None:
                    log.info("client closed the connection: cancelling its query")
                    self.warehouse.kill(tag)

    def server_close(self) -> None:
        self._ticking.set()
        super().server_close()

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP server over chDB (the embedded warehouse)")
    parser.add_argument("--host", default=os.environ.get("AETL_WAREHOUSE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CLICKHOUSE_HTTP_PORT", "8123")))
    parser.add_argument("--data-dir", default=str(data_root() / "warehouse"))
    parser.add_argument("--log-level", default=os.environ.get("AETL_WAREHOUSE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # CLICKHOUSE_PASSWORD, else the file in the data folder (generated if missing); never on argv
    password = ensure_platform_password()
    if not password and not is_loopback_host(args.host):
        log.error(
            "refusing to listen on %s without a password: set CLICKHOUSE_PASSWORD or remove the empty "
            "value so %s is used",
            args.host,
            password_file(),
        )
        return 1
    try:
        server = WarehouseHTTPServer((args.host, args.port), None, PlatformUser(platform_user(), password))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    try:
        # before the engine loads the parts: a MOVE PARTITION that a crash cut in two (recovery.py)
        repair_interrupted_moves(args.data_dir)
    except OSError as exc:
        log.error("start-up repair of %s failed: %s", args.data_dir, exc)
        server.server_close()
        return 1
    try:
        warehouse = Warehouse(
            args.data_dir, max_sessions=int(os.environ.get("AETL_WAREHOUSE_MAX_SESSIONS") or 256)
        )
    except Exception as exc:  # e.g. another server owns the folder: chDB holds a lock on <dir>/status
        log.error("cannot open the data folder %s: %s", args.data_dir, exc)
        server.server_close()
        return 1
    server.warehouse = warehouse
    server.policy = guard.Policy(
        # the configured import roots, and the folder of the run workers' named pipes (PostgreSQL loads)
        file_roots=guard.Policy.roots_from(os.environ.get("AETL_WAREHOUSE_FILE_ROOTS", ""), data_root())
        + (Path(os.path.realpath(data_root() / PIPE_FOLDER)),),
        reject_root=Path(os.path.realpath(data_root() / "rejected")),
        user=server.platform_user.name,
        password=server.platform_user.password,
        table_functions=warehouse.names("SELECT lower(name) FROM system.table_functions"),
        engines=warehouse.names(
            "SELECT lower(name) FROM system.table_engines "
            "UNION ALL SELECT lower(name) FROM system.database_engines"
        ),
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "warehouse listening on http://%s:%s data=%s (chDB %s, engine %s)",
        args.host,
        server.server_address[1],
        warehouse.path,
        CHDB_VERSION,
        warehouse.version,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        warehouse.close()
        log.info("warehouse stopped, data folder released")
    return 0


if __name__ == "__main__":
    sys.exit(main())
