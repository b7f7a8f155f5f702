"""Spot replicas of one Inference workload: the plan of ``core.scaling.spot`` carried out.

The autoscaler decides how many replicas the service needs (``plan_inference``);
with ``spec.inference.spot`` that count is not set on the target but split by
``plan_spot`` into the target's on-demand replicas and one child Deployment per
spot pool (``adapters.spot_children``). Writes are ordered so capacity never dips:
pods under a notice are marked to go first (and go once their replacements are
ready: until their instance is reclaimed they still serve), every increase comes before any
decrease, and a child is deleted (a pool unlisted, or ``spot`` removed) only
once what remains is ready for the whole count.

All memory is in ``status.spot``: each pool's preemptions, since when it is
watched, until when it is avoided and why, and the count last planned (the
service's replicas, as the autoscaler sees them). A restart reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from gpufinops.adapters.spot_children import PoolPlacement, SpotReading
from gpufinops.api.inference import SpotInference
from gpufinops.core.scaling.spot import (
    OnDemandObservation,
    PoolObservation,
    PoolRecord,
    SpotPlan,
    SpotSettings,
    plan_spot,
)
from gpufinops.core.scaling.target import TargetView


class SpotPort(Protocol):
    """What the executor does to the cluster (``adapters.spot_children.SpotChildren``)."""

    def read(self) -> SpotReading | None: ...

    def scale_target(self, reading: SpotReading, replicas: int) -> None: ...

    def put_child(self, reading: SpotReading, placement: PoolPlacement, replicas: int) -> None: ...

    def mark_noticed(self, pods: Sequence[str]) -> None: ...

    def evict(self, pods: Sequence[str]) -> None: ...

    def delete_child(self, reading: SpotReading, pool: str) -> None: ...


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def _epoch(stamp: Any) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None  # hand-edited status: forgotten, as if never recorded


def read_spot_status(status: Mapping[str, Any] | None) -> tuple[dict[str, PoolRecord], int | None]:
    """Each pool's record and the count last planned, from ``status.spot``."""
    spot = (status or {}).get("spot")
    if not isinstance(spot, Mapping):
        return {}, None
    records: dict[str, PoolRecord] = {}
    for item in spot.get("pools") or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        times = [_epoch(t) for t in item.get("preemptionTimes") or []]
        records[str(item["name"])] = PoolRecord(
            preemptions=tuple(sorted(t for t in times if t is not None)),
            watched_since=_epoch(item.get("watchedSince")),
            unavailable_until=_epoch(item.get("unavailableUntil")),
            reason=str(item.get("reason") or ""),
        )
    desired = spot.get("desiredReplicas")
    return records, int(desired) if isinstance(desired, int) else None


def spot_status(
    plan: SpotPlan, reading: SpotReading, desired: int, pools: Sequence[str]
) -> dict[str, Any]:
    """``status.spot``: what runs where now, and each pool's record."""
    out: list[dict[str, Any]] = []
    for pool in pools:
        seen = reading.pools.get(pool, PoolObservation())
        record = plan.records.get(pool, PoolRecord())
        out.append({
            "name": pool,
            "replicas": plan.spot.get(pool, 0),
            "ready": seen.ready,
            "starting": seen.starting,
            "pending": seen.pending,
            "noticed": len(seen.noticed),
            "preemptions": len(record.preemptions),
            "preemptionTimes": [_iso(t) for t in record.preemptions],
            "watchedSince": _iso(record.watched_since),
            "unavailableUntil": _iso(record.unavailable_until),
            "reason": record.reason or None,
        })  # fmt: skip
    return {
        "desiredReplicas": desired,
        "onDemand": {
            "replicas": plan.on_demand,
            "ready": reading.target_ready,
            "base": plan.base,
            "fallback": plan.fallback,
        },
        "extraReplicas": plan.extra,
        "pools": out,
    }


class SpotReplicas:
    """The spot executor of one workload, with its records between ticks."""

    def __init__(self, status: Mapping[str, Any] | None) -> None:
        self.records, self.desired = read_spot_status(status)
        self.replacing = False
        """The last plan's ``replacing``: the sizing core does not learn from the gap."""
        self.present = isinstance((status or {}).get("spot"), Mapping)
        """Children may exist (status.spot was written): a removed ``spot`` is folded back."""

    def service_view(self, target: TargetView, reading: SpotReading) -> TargetView:
        """The service as the autoscaler sees it: the replicas last planned for it (the
        target and its children together, over-provisioning and stand-ins aside), and
        every class's ready ones."""
        replicas = self.desired
        if replicas is None:
            replicas = reading.target_replicas + sum(
                reading.child_replicas(p) for p in reading.children
            )
        return TargetView(
            replicas=replicas,
            ready=reading.target_ready + reading.spot_ready,
            selector=target.selector,
            generation=target.generation,
        )

    def carry_out(
        self,
        port: SpotPort,
        reading: SpotReading,
        desired: int,
        spec: SpotInference,
        placements: Mapping[str, PoolPlacement],
        replacement_seconds: float,
        now: float,
    ) -> tuple[SpotPlan, dict[str, Any]]:
        """Split ``desired`` over the classes and write it; the plan and ``status.spot``."""
        settings = SpotSettings.from_spec(spec, replacement_seconds)
        listed = {p: reading.pools[p] for p in settings.pools if p in reading.pools}
        on_demand = OnDemandObservation(reading.target_replicas, reading.target_ready)
        plan = plan_spot(desired, settings, on_demand, listed, self.records, now)
        port.mark_noticed([p for p in plan.noticed if p not in reading.marked])
        if plan.on_demand > reading.target_replicas:
            port.scale_target(reading, plan.on_demand)
        ups = [p for p in settings.pools if plan.spot[p] >= reading.child_replicas(p)]
        downs = [p for p in settings.pools if plan.spot[p] < reading.child_replicas(p)]
        for pool in (*ups, *downs):
            port.put_child(reading, placements[pool], plan.spot[pool])
        if plan.on_demand < reading.target_replicas:
            port.scale_target(reading, plan.on_demand)
        # Replaced (what stands in is ready), marked a tick ago and still there (the
        # scale-down did not take them): evicted.
        port.evict([p for p in plan.drain if p in reading.marked])
        ready = reading.target_ready + sum(listed[p].ready for p in listed)
        for pool in sorted(set(reading.children) - set(settings.pools)):
            if ready >= desired:
                port.delete_child(reading, pool)
        self.records, self.desired, self.present = dict(plan.records), desired, True
        self.replacing = plan.replacing
        return plan, spot_status(plan, reading, desired, settings.pools)

    def fold(self, port: SpotPort, reading: SpotReading, desired: int) -> bool:
        """``spot`` was removed: the target takes the whole count, and the children are
        deleted once it has that many ready. True when none is left."""
        if reading.target_replicas < desired or not reading.children:
            port.scale_target(reading, desired)
        if reading.children and reading.target_ready < desired:
            return False
        for pool in sorted(reading.children):
            port.delete_child(reading, pool)
        self.records, self.desired, self.present = {}, None, False
        return True
