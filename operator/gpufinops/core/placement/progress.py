"""How much work a run has done and how much of it survives an interruption.

Every run after the first (a restart after an interruption, or a new placement
after a fallback) begins with ``restart_overhead_seconds`` of rescheduling, image
pull and checkpoint reload in which no work is done. The first run has no such
overhead: its start-up is part of the job's own expected duration. Checkpoints are
taken every ``checkpoint_interval_seconds`` of work from the start of the run's
work, which is the same model :func:`~gpufinops.core.placement.choose.expected_run_seconds`
prices, so the estimate and the bookkeeping agree.
"""

import math

from gpufinops.core.placement.model import JobProfile, PlacementMemory

MIN_CHECKPOINT_SECONDS = 1.0
"""Shorter intervals count as this: finer bookkeeping would only add float trouble."""


def checkpoint_interval(job: JobProfile) -> float | None:
    """The job's checkpoint interval, or None when it never checkpoints."""
    interval = job.checkpoint_interval_seconds
    if not interval:
        return None
    return max(interval, MIN_CHECKPOINT_SECONDS)


def restarted(memory: PlacementMemory) -> bool:
    """Whether the current run began with a restart (not the job's first start)."""
    return memory.interruptions > 0 or memory.attempts > 1


def run_work_seconds(job: JobProfile, memory: PlacementMemory, now: float) -> float:
    """Work done by the current run since ``placed_at`` (0 when not running)."""
    if memory.placed_at is None:
        return 0.0
    overhead = job.restart_overhead_seconds if restarted(memory) else 0.0
    return max(0.0, now - memory.placed_at - overhead)


def checkpointed(job: JobProfile, work_seconds: float) -> float:
    """The part of ``work_seconds`` an interruption does not lose (whole intervals)."""
    interval = checkpoint_interval(job)
    if interval is None or work_seconds <= 0:
        return 0.0
    return math.floor(work_seconds / interval) * interval
