"""Threads for tenants' own PromQL, shared fairly between namespaces.

A custom query is the tenant's to write, and it can be slow: a regex over
every series, a subquery over weeks. Run in asyncio's default executor, a
handful of slow ones would hold every thread that the node actions, the cost
loop and every other workload's reads also wait for. Here they get threads of
their own (``workers``), and one namespace holds at most ``per_namespace`` of
them at once: its other ticks wait for its own queries, not for another
tenant's, and never for the operator's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueryPool:
    """A bounded executor with a per-namespace share; used from one event loop."""

    def __init__(self, workers: int, per_namespace: int) -> None:
        if workers < 1 or per_namespace < 1:
            raise ValueError("workers and per_namespace must be at least 1")
        self.workers = workers
        self.per_namespace = min(per_namespace, workers)
        self.executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="gpufinops-custom-queries"
        )
        self._shares: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    async def run(self, namespace: str, call: Callable[[], T]) -> T:
        """``call()`` on a pool thread, once ``namespace`` has a free share."""
        share = self._shares.get(namespace)
        if share is None:
            share = self._shares[namespace] = asyncio.Semaphore(self.per_namespace)
        self._users[namespace] = self._users.get(namespace, 0) + 1
        try:
            async with share:
                return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        finally:
            self._users[namespace] -= 1
            if not self._users[namespace]:  # nobody holds or waits: forget the namespace
                del self._users[namespace]
                del self._shares[namespace]

    def in_use(self, namespace: str) -> int:
        """Calls of ``namespace`` running or waiting (for tests and metrics)."""
        return self._users.get(namespace, 0)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
