"""One instant vector shared by every workload's read, refreshed at most once per ``ttl``.

The cost loop reads a token rate and a mean GPU utilisation per workload each
pass. Asked per workload, that is one query per workload and per reading every
pass; here one query answers every workload (all namespaces, grouped by
namespace and pod), and each workload adds up the rows of its own pods in
Python with the same pod pattern its own query would use (``Selector``, as
the autoscaler's batches do). A failed query fails every read of the period
with its reason; a workload with no rows is unknown, never zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gpufinops.adapters.prometheus.batch import Index, Selector, VectorSource, index_rows
from gpufinops.adapters.prometheus.client import MetricsError
from gpufinops.adapters.prometheus.presets import ScopeLabels


class SharedVector:
    """The rows of ``query`` by namespace and pod, cached for ``ttl`` seconds."""

    def __init__(
        self,
        source: VectorSource,
        query: str,
        labels: ScopeLabels,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.source, self.query, self.labels = source, query, labels
        self.ttl, self.clock = ttl, clock
        self.queries = 0
        """Queries sent so far (for tests)."""
        self._lock = threading.Lock()
        self._fetched: float | None = None
        self._index: Index | None = None
        self._error: MetricsError | None = None

    def values(self, selector: Selector) -> list[float]:
        """The values of the rows ``selector`` picks; raises the query's ``MetricsError``."""
        with self._lock:  # readers run in worker threads: one refresh, the others wait for it
            if self._fetched is None or self.clock() - self._fetched >= self.ttl:
                try:
                    self._index, self._error = (
                        index_rows(self.source.vector(self.query), self.labels),
                        None,
                    )
                except MetricsError as exc:
                    self._index, self._error = None, exc
                self.queries += 1
                self._fetched = self.clock()
            index, error = self._index, self._error
        if error is not None:
            raise MetricsError(error.reason, query=self.query)
        assert index is not None
        return selector.values(index, self.labels)
