"""Reading and writing AIWorkload status in its Kubernetes wire form."""

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from gpufinops.api.status import AutoscalerMemory, Condition, TimedValue
from gpufinops.core.scaling.behavior import Sample
from gpufinops.core.scaling.decide import ScalingState


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
    )


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
    }
