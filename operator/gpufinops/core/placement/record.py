"""The placement loop's whole state for one Training workload, as plain data.

It is persisted in ``status.placement`` (``adapters.placement_status``) so that a
restarted operator resumes where its predecessor was; ``core.placement.lifecycle``
reads and returns it each tick.
"""

from dataclasses import dataclass, field

from gpufinops.core.placement.model import PlacementMemory

MAX_REMEMBERED_PODS = 64


class Phase:
    WAITING = "Waiting"
    RUNNING = "Running"
    FALLING_BACK = "FallingBack"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass
class PlacementRecord:
    """The loop's whole persisted state for one Training workload."""

    memory: PlacementMemory = field(default_factory=PlacementMemory)
    phase: str = Phase.WAITING
    job: str | None = None
    reason: str | None = None
    not_before: float | None = None
    by_reason: dict[str, int] = field(default_factory=dict)
    interrupted_pods: list[str] = field(default_factory=list)
    fallback_reason: str | None = None
    cost_to_finish_usd: float | None = None
    cost_to_finish_on_demand_usd: float | None = None
    deadline_at_risk: bool = False
    expected_finish: float | None = None
