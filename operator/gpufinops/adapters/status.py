"""Reading and writing AIWorkload status in its Kubernetes wire form."""

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from gpufinops.api.status import AutoscalerMemory, Condition, HeadroomMemory, TimedValue
from gpufinops.core.scaling.behavior import Sample
from gpufinops.core.scaling.decide import ScalingState
from gpufinops.core.scaling.headroom import BINS, Calibration, Pending


def without_nulls(value: Any) -> Any:
    """``value`` as a merge patch leaves it stored: every null member of every object
    left out, at any depth (a merge patch deletes what it sets to null)."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def read_conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    """Conditions as stored; entries another writer mangled are dropped, not fatal."""
    out = []
    for raw in (status or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return out


def conditions_patch(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    """Conditions as the status subresource stores them (camelCase, RFC 3339 times)."""
    return [c.to_wire() for c in conditions]


def read_memory(status: Mapping[str, Any] | None) -> ScalingState:
    """The autoscaler's memory from status; a damaged one restarts empty, never fails."""
    raw = (status or {}).get("autoscaler")
    if not raw:
        return ScalingState()
    try:
        memory = AutoscalerMemory.model_validate(raw)
    except ValidationError:
        return ScalingState()

    def samples(values: list[TimedValue] | None) -> tuple[Sample, ...]:
        return tuple(Sample(v.time, v.value) for v in values or [])

    return ScalingState(
        recommendations=samples(memory.recommendations),
        scale_ups=samples(memory.scale_ups),
        scale_downs=samples(memory.scale_downs),
        capacity_per_replica=memory.capacity_per_replica,
        consecutive_failures=memory.consecutive_failures or 0,
        last_active_time=memory.last_active_time,
        headroom=_calibration(memory.headroom),
    )


def _calibration(memory: HeadroomMemory | None) -> Calibration:
    """The stored histogram; one of a different shape (or damaged) starts over."""
    counts = tuple(memory.counts or ()) if memory is not None else ()
    if memory is None or len(counts) > BINS + 1 or any(not c >= 0 for c in counts):
        return Calibration()
    if counts:
        counts = counts + (0.0,) * (BINS + 1 - len(counts))
    pending = tuple(Pending(p.time, max(p.headroom, 1.0)) for p in memory.pending or ())
    return Calibration(pending, counts, max(memory.scored or 0.0, 0.0), memory.updated)


def _headroom_patch(calibration: Calibration) -> dict[str, Any]:
    """Compact: six significant digits, the empty tail of the histogram left out."""
    counts = [float(f"{c:.6g}") for c in calibration.counts]
    while counts and counts[-1] == 0.0:
        counts.pop()
    return {
        "counts": counts,
        "scored": round(calibration.scored, 3),
        "updated": calibration.updated,
        "pending": [
            {"time": round(p.time, 3), "headroom": round(p.headroom, 4)}
            for p in calibration.pending
        ],
    }


def memory_patch(state: ScalingState) -> dict[str, Any]:
    """The autoscaler's memory as stored in ``status.autoscaler``."""

    def values(samples: tuple[Sample, ...]) -> list[dict[str, Any]]:
        return [{"time": round(s.time, 3), "value": s.value} for s in samples]

    return {
        "recommendations": values(state.recommendations),
        "scaleUps": values(state.scale_ups),
        "scaleDowns": values(state.scale_downs),
        "capacityPerReplica": state.capacity_per_replica,
        "consecutiveFailures": state.consecutive_failures,
        "lastActiveTime": state.last_active_time,
        "headroom": _headroom_patch(state.headroom),
    }
