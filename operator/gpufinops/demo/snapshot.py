"""What the screen shows, as plain data: :class:`Snapshot` and its rows.

Kept apart from reading the cluster (``collect``) and from drawing
(``view``) so the drawing is a pure function the unit tests exercise with
hand-made snapshots, and so a missing field (no cost writer yet, no forecast
yet) is ``None`` in one place and "—" on screen, never a crash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class WorkloadRow:
    namespace: str
    name: str
    type: str
    team: str
    current: int | None = None
    desired: int | None = None
    ready: int | None = None
    load: float | None = None
    """Requests/s the load generator offers now (the truth the operator cannot see)."""
    demand: float | None = None
    """Demand the operator reads from Prometheus, requests/s."""
    queue: float | None = None
    forecast: float | None = None
    """status.forecast.predictedPeak, requests/s."""
    placement: str | None = None
    hourly_usd: float | None = None
    today_usd: float | None = None
    month_usd: float | None = None
    decision: str | None = None


@dataclass(frozen=True)
class PoolRow:
    name: str
    capacity_type: str
    nodes: int
    ready: int
    gpus_used: int
    gpus_total: int


@dataclass(frozen=True)
class EventRow:
    time: datetime | None
    reason: str
    object: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    cluster: str
    operator: str
    load: str
    workloads: list[WorkloadRow] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Notes:
    """What the demo itself did (nodes added, traces used), shown among the Events."""

    rows: list[EventRow] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: str) -> None:
        with self.lock:
            self.rows.append(EventRow(datetime.now(UTC), "Demo", "demo", message))
            del self.rows[:-20]

    def latest(self) -> list[EventRow]:
        with self.lock:
            return list(self.rows)
