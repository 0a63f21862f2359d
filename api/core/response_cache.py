"""A microcache of the hottest GET answers (the pipeline and run lists), for a fraction of a second.

Under 50 concurrent clients `GET /pipelines` cost ~8.5 ms of the API's CPU per request (routing,
dependencies, the ORM rows, pydantic), so the clients queued behind one Python process (p99 ~1 s).
Dashboards poll these lists; within `AETL_RESPONSE_CACHE_SECONDS` (default 1 s) the same caller
asking the same URL gets the same bytes, answered by the outer middleware without the app.

What keeps it correct:
- the key is the verified caller (a signed token or a known API key) and a digest of that very
  credential, the path and the query string: no answer ever goes to another user, nor to another
  token or key of the same user (a key may be scoped narrower than its owner's session); anonymous
  requests are never cached;
- only 200 answers of the routes listed in `CACHED_ROUTES` are kept, each at most `MAX_BODY` bytes;
- every request that may write (any method but GET/HEAD/OPTIONS) drops every entry when it reaches
  the app and again when it ends (one refused before, by the rate limit or the body limit, drops
  nothing), and an answer computed while a write was under way is not kept: a client
  reads its own writes, and an admin's change to a user, a role, a key or a session applies to the
  next request (this process is the only API process);
- what changes outside the API (runs started by a schedule, a deploy finishing in the code location)
  shows up at most that many seconds later, on top of the run cache's own delay
  (`AETL_RUN_CACHE_SECONDS`); an answer may ask for a shorter life: the app sets
  `request.state.cache_seconds` (the run lists do while a run in them is unfinished, so a client
  polling for the end of its run sees it within a fraction of a second);
- the rate limit, the request id, the access log and the metrics still run for every request;
- a request with `Cache-Control: no-cache` (or `no-store`) is always answered by the app;
- when an entry is missing, the first request computes it and the same requests arriving meanwhile
  wait for that answer (single flight); only a 200 is shared, otherwise each runs the app itself;
- when an entry has just expired (not dropped by a write), the first request computes the new one
  and the same requests arriving meanwhile get the expired one (stale-while-revalidate), so an
  answer is at most `seconds` old, or twice that while its replacement is being computed.
`AETL_RESPONSE_CACHE_SECONDS=0` turns it off.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

CACHED_ROUTES = frozenset({"/api/v1/pipelines", "/api/v1/pipelines/{pipeline_id}/runs"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_ENTRIES = 4096
MAX_BODY = 1 << 20

Key = tuple[str, str, str, bytes]  # (identity, digest of the credential headers, path, query string)


@dataclass(frozen=True)
class CachedAnswer:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    user_id: str | None
    stored_at: float
    ttl: float | None = None  # shorter than the cache's own time when the answer asked for it


class ResponseCache:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[Key, CachedAnswer] = OrderedDict()
        self.generation = 0  # moves on every write: answers of an older generation are never kept
        self.hits = 0
        # answers being computed right now: a burst of the same request (50 clients when an entry
        # expires) waits for the one computation instead of running the app 50 times at once
        self._inflight: dict[Key, asyncio.Future[CachedAnswer | None]] = {}

    def applies(self, method: str, route: str, identity: str) -> bool:
        cacheable = method == "GET" and route in CACHED_ROUTES
        return self.seconds > 0 and cacheable and identity.startswith("user:")

    def get(self, key: Key) -> CachedAnswer | None:
        """A fresh answer (younger than `seconds`), or None."""
        answer, fresh = self.lookup(key)
        return answer if fresh else None

    def lookup(self, key: Key) -> tuple[CachedAnswer | None, bool]:
        """(answer, fresh): a fresh one; or a stale one (younger than twice `seconds`), which may be
        served only while another request computes its replacement; or (None, False)."""
        answer = self._entries.get(key)
        if answer is None:
            return None, False
        age = self._clock() - answer.stored_at
        ttl = self.seconds if answer.ttl is None else min(answer.ttl, self.seconds)
        if age < ttl:
            self.hits += 1
            return answer, True
        if age < 2 * ttl:
            return answer, False
        self._entries.pop(key, None)
        return None, False

    def put(self, key: Key, generation: int, answer: CachedAnswer) -> bool:
        """Keep an answer computed during `generation`; False if a write came in between."""
        if generation != self.generation or answer.status != 200 or len(answer.body) > MAX_BODY:
            return False
        self._entries[key] = answer
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        return True

    def written(self) -> None:
        """A request that may write began or ended: forget everything, including what is being
        computed (a request arriving from now on computes its own answer)."""
        self.generation += 1
        self._entries.clear()
        self._inflight.clear()

    def pending(self, key: Key) -> asyncio.Future[CachedAnswer | None] | None:
        """The computation of this key under way, if any (await it with asyncio.shield)."""
        return self._inflight.get(key)

    def lead(self, key: Key) -> asyncio.Future[CachedAnswer | None]:
        future: asyncio.Future[CachedAnswer | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    def finish(
        self, key: Key, future: asyncio.Future[CachedAnswer | None], answer: CachedAnswer | None
    ) -> None:
        """Hand the leader's answer (None: nothing to share) to whoever waited for it."""
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.done():
            future.set_result(answer if answer is not None and answer.status == 200 else None)

    def now(self) -> float:
        return self._clock()
