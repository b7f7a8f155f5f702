"""``status.placement`` ↔ the placement loop's record, so a restart resumes where it was.

Everything the loop needs to continue (phase, pool, interruptions and the pods
already counted, the checkpointed progress) is kept in status; the operator holds
nothing only in memory. Spend is the cost loop's (``status.cost``), the one ledger.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gpufinops.api.status import PlacementStatus
from gpufinops.config.model import CapacityType
from gpufinops.core.placement.model import PlacementMemory
from gpufinops.core.placement.record import MAX_REMEMBERED_PODS, Phase, PlacementRecord


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def read_record(status: Mapping[str, Any] | None) -> PlacementRecord:
    raw = (status or {}).get("placement")
    if not raw:
        return PlacementRecord()
    p = PlacementStatus.model_validate(raw)
    capacity = CapacityType(p.capacity_type) if p.capacity_type else None
    memory = PlacementMemory(
        pool=p.pool,
        capacity_type=capacity,
        placed_at=_epoch(p.placed_at),
        interruptions=p.interruptions or 0,
        attempts=p.attempts or 0,
        unavailable_pools={f.pool: f.time.timestamp() for f in p.unavailable_pools or []},
        on_demand_only=bool(p.on_demand_only),
        pending_since=_epoch(p.pending_since),
        progress_seconds=p.progress_seconds or 0.0,
    )
    return PlacementRecord(
        memory=memory,
        phase=p.phase or Phase.WAITING,
        job=p.job,
        reason=p.reason,
        not_before=_epoch(p.not_before),
        by_reason=dict(p.interruptions_by_reason or {}),
        interrupted_pods=list(p.interrupted_pods or []),
        fallback_reason=p.fallback_reason,
        cost_to_finish_usd=p.cost_to_finish_usd,
        cost_to_finish_on_demand_usd=p.cost_to_finish_on_demand_usd,
        deadline_at_risk=bool(p.deadline_at_risk),
        expected_finish=_epoch(p.expected_finish),
    )


def record_patch(record: PlacementRecord) -> dict[str, Any]:
    """The ``status.placement`` object for ``record`` (every field, so stale ones clear)."""
    m = record.memory
    status = PlacementStatus(
        job=record.job,
        phase=record.phase,
        pool=m.pool,
        capacity_type=str(m.capacity_type) if m.capacity_type else None,
        reason=record.reason,
        placed_at=_time(m.placed_at),
        not_before=_time(record.not_before),
        attempts=m.attempts,
        interruptions=m.interruptions,
        interruptions_by_reason=dict(record.by_reason) or None,
        interrupted_pods=record.interrupted_pods[-MAX_REMEMBERED_PODS:] or None,
        on_demand_only=m.on_demand_only,
        fallback_reason=record.fallback_reason,
        pending_since=_time(m.pending_since),
        unavailable_pools=[
            {"pool": pool, "time": _time(t)} for pool, t in sorted(m.unavailable_pools.items())
        ]
        or None,
        progress_seconds=round(m.progress_seconds, 3),
        cost_to_finish_usd=_round(record.cost_to_finish_usd),
        cost_to_finish_on_demand_usd=_round(record.cost_to_finish_on_demand_usd),
        deadline_at_risk=record.deadline_at_risk,
        expected_finish=_time(record.expected_finish),
    )
    wire = status.model_dump(mode="json", by_alias=True)
    return dict(wire)


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
