"""Plain data for training placement: what a pool offers, what a job needs, what
happened so far. Times are epoch seconds, passed in by the caller."""

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpufinops.api.training import StartWindow
from gpufinops.config.model import CapacityType, NodePool

HOURS_PER_MONTH = 730.0
UNAVAILABLE_MEMORY_SECONDS = 180.0
"""How long a pool that failed to provide capacity is skipped (Karpenter's 3 minutes)."""
DEFAULT_RESTART_OVERHEAD_SECONDS = 300.0
"""Rescheduling, image pull and checkpoint reload after an interruption, when unknown."""

Trigger = Literal["PendingTimeout", "MaxInterruptions", "DeadlineAtRisk"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PoolOffer(_Frozen):
    """One node pool as the placement core sees it."""

    name: str
    capacity_type: CapacityType
    gpu_type: str | None = None
    gpus_per_node: int = Field(gt=0)
    gpu_hourly_price_usd: float = Field(ge=0)
    interruptions_per_hour: float = Field(default=0.0, ge=0)
    """Expected interruptions of one node per hour (0 for on-demand)."""

    @property
    def spot(self) -> bool:
        return self.capacity_type == CapacityType.SPOT

    @classmethod
    def from_pool(cls, pool: NodePool) -> "PoolOffer":
        """The offer of a configured pool; the monthly interruption frequency (the
        Spot Advisor band, a probability per instance-month) becomes an hourly rate."""
        monthly = pool.interruption_rate_per_month
        if monthly is None:
            monthly = 0.10 if pool.capacity_type == CapacityType.SPOT else 0.0
        rate = -math.log1p(-min(monthly, 0.999)) / HOURS_PER_MONTH if monthly > 0 else 0.0
        return cls(
            name=pool.name,
            capacity_type=pool.capacity_type,
            gpu_type=pool.gpu_type,
            gpus_per_node=pool.gpus_per_node or 1,
            gpu_hourly_price_usd=pool.gpu_hourly_price_usd,
            interruptions_per_hour=rate,
        )


class JobProfile(_Frozen):
    """What the job needs and by when."""

    gpus: float = Field(ge=0)
    """GPUs held by all its pods together (fractions count by fraction)."""
    pods: int = Field(default=1, ge=1)
    expected_duration_seconds: float | None = Field(default=None, gt=0)
    checkpoint_interval_seconds: float | None = Field(default=None, ge=0)
    """None or 0: no checkpoints, an interruption loses all work done so far."""
    restart_overhead_seconds: float = Field(default=DEFAULT_RESTART_OVERHEAD_SECONDS, ge=0)
    deadline: float | None = None
    start_windows: tuple[StartWindow, ...] = ()
    submitted_at: float


class PlacementMemory(_Frozen):
    """What the operator remembers about a job's placement (persisted in status)."""

    pool: str | None = None
    capacity_type: CapacityType | None = None
    placed_at: float | None = None
    """When the job was last unsuspended on ``pool``."""
    interruptions: int = Field(default=0, ge=0)
    attempts: int = Field(default=0, ge=0)
    """Placements so far (1 after the first unsuspend)."""
    unavailable_pools: dict[str, float] = Field(default_factory=dict)
    """Pool name → when it last failed to provide capacity."""
    on_demand_only: bool = False
    """Set by a fallback: the job never returns to spot."""
    pending_since: float | None = None
    """Since when the job's pods have been unschedulable on ``pool`` (None: they are not)."""
    progress_seconds: float = Field(default=0.0, ge=0)
    """Useful work done, as seconds of uninterrupted run time (checkpointed work counts)."""


class Placement(_Frozen):
    """Where to run the job now, or why not yet."""

    pool: str | None
    """None: no allowed pool can run it (see reason)."""
    capacity_type: CapacityType | None = None
    start_at: float | None = None
    """Not before this time (a start window); None: now."""
    expected_cost_usd: float | None = None
    on_demand_cost_usd: float | None = None
    """Expected cost on the cheapest allowed on-demand pool, for comparison."""
    reason: str


class Verdict(_Frozen):
    """Whether a placed job should move to on-demand capacity."""

    fall_back: bool
    """Move now (re-suspend, re-place on on-demand, unsuspend)."""
    trigger: Trigger | None = None
    report_only: bool = False
    """A trigger fired but the spec forbids fallback: report, do not move."""
    deadline_at_risk: bool = False
    expected_finish: float | None = None
    message: str
