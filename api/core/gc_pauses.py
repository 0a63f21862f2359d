"""How long the garbage collector stops this process, per generation, for /metrics.

Every request in flight waits out a collection (the event loop is one thread), so a long full
collection shows up as the p99 of every route at once. The API freezes what start-up built
(`gc.freeze()` in api.main) so that full collections no longer walk it; these figures show the
pauses that remain and how many objects are frozen.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Pauses:
    """Process-wide: one gc callback, whatever the number of apps (and registries) in the process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {generation: [0] * (len(BUCKETS) + 1) for generation in range(3)}
        self.sums = dict.fromkeys(range(3), 0.0)
        self.started: float | None = None
        self.installed = False

    def install(self) -> None:
        with self.lock:
            if not self.installed:
                gc.callbacks.append(self._callback)
                self.installed = True

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        if self.started is None:
            return
        seconds = time.perf_counter() - self.started
        self.started = None
        generation = int(info.get("generation", 2))
        index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
        with self.lock:
            self.counts[generation][index] += 1
            self.sums[generation] += seconds

    def snapshot(self) -> tuple[dict[int, list[int]], dict[int, float]]:
        with self.lock:
            return {g: list(c) for g, c in self.counts.items()}, dict(self.sums)


PAUSES = _Pauses()


class GcPauseCollector(Collector):
    """`aetl_gc_pause_seconds{generation}` (histogram) and `aetl_gc_frozen_objects` (gauge)."""

    def __init__(self) -> None:
        PAUSES.install()

    def collect(self) -> Iterator[Any]:
        counts, sums = PAUSES.snapshot()
        histogram = HistogramMetricFamily(
            "aetl_gc_pause_seconds",
            "Garbage-collection pauses of the API process, by generation",
            labels=["generation"],
        )
        for generation, per_bucket in counts.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), per_bucket, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            histogram.add_metric([str(generation)], buckets, sums[generation])
        yield histogram
        frozen = GaugeMetricFamily(
            "aetl_gc_frozen_objects", "Objects moved out of the collector's reach by gc.freeze()"
        )
        frozen.add_metric([], gc.get_freeze_count())
        yield frozen
