"""The run cache in front of Dagster's GraphQL: fresh, stale-while-revalidate, single flight, invalidation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.pipelines.run_cache import ACTIVE_FRESH_SECONDS, STALE_FACTOR, RunCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Answers with how many times it was called; can be made slow or failing."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self) -> int:
        time.sleep(self.delay)
        with self.lock:
            self.calls += 1
            if self.fail is not None:
                raise self.fail
            return self.calls


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_fresh_answer_is_served_without_asking_again() -> None:
    clock, load = Clock(), Loader()
    cache = RunCache(1.0, clock=clock)
    assert cache.get("k", load) == 1
    clock.now += 0.5
    assert cache.get("k", load) == 1
    assert load.calls == 1


def test_an_answer_with_a_run_still_going_is_fresh_for_a_moment_only() -> None:
    clock, load = Clock(), Loader()
    cache = RunCache(1.0, clock=clock)
    # `settled` says whether the answer can still change (here: odd answers hold an unfinished run)
    assert cache.get("running", load, settled=lambda value: value % 2 == 0) == 1
    assert cache.get("done", load, settled=lambda value: True) == 2
    clock.now += ACTIVE_FRESH_SECONDS + 0.05
    assert cache.get("done", load, settled=lambda value: True) == 2  # still fresh: no refresh
    assert cache.get("running", load, settled=lambda value: value % 2 == 0) == 1  # stale: one refresh
    wait_for(lambda: load.calls == 3)
    time.sleep(0.05)
    assert cache.get("running", load, settled=lambda value: value % 2 == 0) == 3
    assert load.calls == 3


def test_stale_answer_is_served_at_once_while_one_refresh_runs() -> None:
    clock, load = Clock(), Loader(delay=0.2)
    cache = RunCache(1.0, clock=clock)
    assert cache.get("k", load) == 1
    clock.now += 2.0  # stale, within the stale window
    started = time.monotonic()
    answers = [cache.get("k", load) for _ in range(20)]
    assert time.monotonic() - started < 0.15, "stale readers must not wait for the refresh"
    assert answers == [1] * 20
    wait_for(lambda: load.calls == 2)
    time.sleep(0.05)
    assert cache.get("k", load) == 2  # the refreshed answer, fresh again
    assert load.calls == 2, "twenty stale readers started exactly one refresh"


def test_concurrent_first_readers_share_one_load() -> None:
    load = Loader(delay=0.3)
    cache = RunCache(1.0)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: cache.get("k", load), range(20)))
    assert answers == [1] * 20 and load.calls == 1


def test_too_old_answer_is_reloaded_before_answering() -> None:
    clock, load = Clock(), Loader()
    cache = RunCache(1.0, clock=clock)
    cache.get("k", load)
    clock.now += 1.0 * STALE_FACTOR + 1
    assert cache.get("k", load) == 2


def test_invalidate_drops_every_answer_with_the_tag() -> None:
    clock, load = Clock(), Loader()
    cache = RunCache(1.0, clock=clock)
    cache.get(("latest", ("a", "b")), load, tags=("a", "b"))
    cache.get(("runs", "b"), load, tags=("b",))
    cache.get(("runs", "c"), load, tags=("c",))
    cache.invalidate("b")
    assert cache.get(("latest", ("a", "b")), load, tags=("a", "b")) == 4
    assert cache.get(("runs", "b"), load, tags=("b",)) == 5
    assert cache.get(("runs", "c"), load, tags=("c",)) == 3  # untouched


def test_answer_of_a_load_overtaken_by_invalidate_is_not_kept() -> None:
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        return "before"

    cache = RunCache(1.0)
    reader = threading.Thread(target=cache.get, args=("k", slow), kwargs={"tags": ("p",)})
    reader.start()
    time.sleep(0.05)
    cache.invalidate("p")  # the API launched a run while Dagster was being asked
    release.set()
    reader.join(5)
    assert cache.get("k", lambda: "after", tags=("p",)) == "after"


def test_failed_first_load_raises_and_the_next_reader_tries_again() -> None:
    load = Loader()
    load.fail = RuntimeError("dagster down")
    cache = RunCache(1.0)
    with pytest.raises(RuntimeError, match="dagster down"):
        cache.get("k", load)
    load.fail = None
    assert cache.get("k", load) == 2


def test_failed_refresh_keeps_the_stale_answer() -> None:
    clock, load = Clock(), Loader()
    cache = RunCache(1.0, clock=clock)
    cache.get("k", load)
    clock.now += 2.0
    load.fail = RuntimeError("dagster down")
    assert cache.get("k", load) == 1
    wait_for(lambda: load.calls == 2)
    time.sleep(0.05)
    assert cache.get("k", load) == 1  # still the stale answer; a new refresh is under way


def test_zero_seconds_turns_the_cache_off() -> None:
    load = Loader()
    cache = RunCache(0.0)
    assert [cache.get("k", load) for _ in range(3)] == [1, 2, 3]
