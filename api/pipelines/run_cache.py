"""A short-lived, shared cache of Dagster run answers for the list endpoints.

`GET /pipelines` (the last run of every row) and `GET /pipelines/{id}/runs` ask Dagster's GraphQL on
every request. Under 50 concurrent clients every request queued behind the webserver and p99 reached
tens of seconds. Dagster stays the only source of truth for runs; this layer only keeps its last
answers for a moment:

- fresh for `AETL_RUN_CACHE_SECONDS` (default 1 s): served as is;
- then stale for up to `STALE_FACTOR` times that: served at once while ONE background refresh asks
  Dagster again (stale-while-revalidate), so a burst of readers never waits on GraphQL;
- older, or never asked: the first reader asks Dagster and every concurrent reader of the same key
  waits for that one answer (single flight), never N identical GraphQL queries;
- an answer that holds a run not yet finished (`settled` says so) is fresh for only
  `ACTIVE_FRESH_SECONDS` (0.25 s): a client polling for the end of its run sees it that soon, while
  answers about finished runs, which only a new run changes, keep the full time;
- anything the API itself does to a pipeline's runs (launch, terminate, deploy, delete) drops that
  pipeline's entries, so its own clients read their writes. Runs started elsewhere (a schedule, the
  Dagster UI) show up within one refresh: at most ~1 s plus a GraphQL round trip late.

A failed refresh keeps the stale value until it expires; a failed first load raises to the caller.
`AETL_RUN_CACHE_SECONDS=0` turns the cache off (every request asks Dagster).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("api.pipelines.run_cache")

MAX_ENTRIES = 20_000  # beyond this, answers too old to serve are dropped
STALE_FACTOR = 30  # a value is served (while refreshed) for up to 30× its fresh time
ACTIVE_FRESH_SECONDS = 0.25  # fresh time of an answer that holds a run still going


@dataclass
class _Entry:
    value: Any = None
    loaded_at: float = 0.0
    loading: Future[Any] | None = None  # the one load in flight for this key
    tags: frozenset[str] = field(default_factory=frozenset)
    fresh_for: float = 0.0  # how long `value` is fresh (shorter while it holds an unfinished run)
    settled: Callable[[Any], bool] | None = None  # see RunCache.get


class RunCache:
    def __init__(self, fresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh_seconds = fresh_seconds
        self.stale_seconds = fresh_seconds * STALE_FACTOR
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._by_tag: dict[str, set[Hashable]] = {}
        self._refresher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="run-cache")
        self.loads = 0  # how many times a loader ran (tests and the benchmark read it)

    @property
    def enabled(self) -> bool:
        return self.fresh_seconds > 0

    def get(
        self,
        key: Hashable,
        loader: Callable[[], Any],
        tags: Iterable[str] = (),
        settled: Callable[[Any], bool] | None = None,
    ) -> Any:
        """The cached answer for `key`, loading it with `loader` when needed (see the module doc).

        `settled(value)`: False while the answer holds something still changing (a run not finished),
        which makes it fresh for ACTIVE_FRESH_SECONDS only.
        """
        if not self.enabled:
            return loader()
        run_here: Future[Any] | None = None
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None and entry.loaded_at:
                age = now - entry.loaded_at
                if age < entry.fresh_for:
                    return entry.value
                if age < self.stale_seconds:
                    if entry.loading is None:
                        entry.loading = self._start(key, entry, loader, background=True)
                    return entry.value
            if entry is None:
                entry = self._entries[key] = _Entry(tags=frozenset(tags), settled=settled)
                for tag in entry.tags:
                    self._by_tag.setdefault(tag, set()).add(key)
            if entry.loading is not None:
                loading = entry.loading
            else:
                loading = entry.loading = self._start(key, entry, loader, background=False)
                run_here = loading
            if len(self._entries) > MAX_ENTRIES:
                self._purge(now)
        if run_here is not None:
            self._load(key, entry, loader, run_here, background=False)
        return loading.result()

    def _start(
        self, key: Hashable, entry: _Entry, loader: Callable[[], Any], *, background: bool
    ) -> Future[Any]:
        future: Future[Any] = Future()
        if background:
            self._refresher.submit(self._load, key, entry, loader, future, True)
        return future

    def _load(
        self, key: Hashable, entry: _Entry, loader: Callable[[], Any], future: Future[Any], background: bool
    ) -> None:
        try:
            value = loader()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting readers
            with self._lock:
                if entry.loading is future:
                    entry.loading = None
            if background:
                logger.warning("run cache refresh of %r failed: %s", key, error)
            future.set_exception(error)
            return
        fresh_for = self.fresh_seconds
        if entry.settled is not None and not entry.settled(value):
            fresh_for = min(fresh_for, ACTIVE_FRESH_SECONDS)
        with self._lock:
            self.loads += 1
            # an entry invalidated meanwhile is no longer in the map: its late answer is dropped
            if self._entries.get(key) is entry:
                entry.value, entry.loaded_at, entry.fresh_for = value, self._clock(), fresh_for
            if entry.loading is future:
                entry.loading = None
        future.set_result(value)

    def _purge(self, now: float) -> None:
        """Drop answers too old to serve (called under the lock when the cache grows large)."""
        for key, entry in list(self._entries.items()):
            if entry.loading is None and now - entry.loaded_at >= self.stale_seconds:
                del self._entries[key]
                for tag in entry.tags:
                    self._by_tag.get(tag, set()).discard(key)

    def invalidate(self, tag: str) -> None:
        """Forget every answer tagged `tag` (e.g. a pipeline id): the next reader asks Dagster."""
        with self._lock:
            for key in self._by_tag.pop(tag, set()):
                entry = self._entries.pop(key, None)
                if entry is not None:
                    for other in entry.tags - {tag}:
                        self._by_tag.get(other, set()).discard(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_tag.clear()
