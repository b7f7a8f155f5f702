"""Whether a job on spot should move to on-demand capacity, and why.

Triggers, checked only while the job is on a spot pool, first match wins:

- ``PendingTimeout``: pods unschedulable and ``now - pending_since ≥ pending_timeout_seconds``
  (spot capacity that does not come is as bad as spot capacity that goes);
- ``MaxInterruptions``: ``interruptions ≥ max_interruptions``;
- ``DeadlineAtRisk``: ``now + expected_run_seconds(remaining) > deadline``, with the
  same interruption model the placement priced.

Thresholds are inclusive so that a limit of N means "the N-th event moves the job".
The deadline estimate is reported on on-demand too, where moving would not help.
"""

import math

from gpufinops.api.training import Spot
from gpufinops.core.placement.choose import clock, expected_run_seconds
from gpufinops.core.placement.model import JobProfile, PlacementMemory, PoolOffer, Trigger, Verdict
from gpufinops.core.placement.progress import restarted, run_work_seconds


def remaining_seconds(job: JobProfile, memory: PlacementMemory, now: float) -> float | None:
    """Work left: expected duration - saved progress - work of the current run (≥ 0)."""
    if job.expected_duration_seconds is None:
        return None
    done = memory.progress_seconds + run_work_seconds(job, memory, now)
    return max(0.0, job.expected_duration_seconds - done)


def _restart_left(job: JobProfile, memory: PlacementMemory, now: float) -> float:
    """The part of a restart still ahead, which delays the finish without doing work."""
    if memory.placed_at is None or not restarted(memory):
        return 0.0
    return max(0.0, memory.placed_at + job.restart_overhead_seconds - now)


def _trigger(
    job: JobProfile,
    spot: Spot,
    memory: PlacementMemory,
    offer: PoolOffer,
    now: float,
    *,
    pending: bool,
    at_risk: bool,
    finish: float | None,
) -> tuple[Trigger, str] | None:
    if pending:
        since = memory.pending_since if memory.pending_since is not None else now
        waited = now - since
        if waited >= spot.pending_timeout_seconds:
            return "PendingTimeout", (
                f"pods unschedulable on {offer.name} for {waited:.0f} s "
                f"(limit {spot.pending_timeout_seconds} s)"
            )
    if memory.interruptions >= spot.max_interruptions:
        return "MaxInterruptions", (
            f"{memory.interruptions} spot interruptions on {offer.name} "
            f"(limit {spot.max_interruptions})"
        )
    if at_risk and finish is not None and job.deadline is not None:
        return "DeadlineAtRisk", (
            f"expected finish {clock(finish)} on {offer.name} is after the deadline "
            f"{clock(job.deadline)}"
        )
    return None


def fallback_verdict(
    job: JobProfile,
    spot: Spot,
    memory: PlacementMemory,
    offer: PoolOffer,
    now: float,
    *,
    pending: bool,
) -> Verdict:
    """The verdict for a job placed on ``offer``; ``pending``: its pods are unschedulable."""
    left = remaining_seconds(job, memory, now)
    finish = None
    if left is not None:
        finish = now + _restart_left(job, memory, now) + expected_run_seconds(job, offer, left)
    at_risk = job.deadline is not None and finish is not None and finish > job.deadline
    # An unbounded estimate (interruptions outpace the work) is at risk but has no date.
    shown = finish if finish is not None and math.isfinite(finish) else None
    fired = None
    if offer.spot:
        fired = _trigger(
            job, spot, memory, offer, now, pending=pending, at_risk=at_risk, finish=finish
        )
    if fired is None:
        message = f"running on {offer.name} ({offer.capacity_type})"
        if finish is not None:
            message += f", expected finish {clock(finish)}"
        if at_risk and job.deadline is not None:
            message += f", after the deadline {clock(job.deadline)}"
        return Verdict(
            fall_back=False, deadline_at_risk=at_risk, expected_finish=shown, message=message
        )
    trigger, why = fired
    if spot.fallback_to_on_demand:
        message = f"{trigger}: {why}; moving to on-demand capacity"
    else:
        message = f"{trigger}: {why}; staying on spot because fallbackToOnDemand is false"
    return Verdict(
        fall_back=spot.fallback_to_on_demand,
        trigger=trigger,
        report_only=not spot.fallback_to_on_demand,
        deadline_at_risk=at_risk,
        expected_finish=shown,
        message=message,
    )
