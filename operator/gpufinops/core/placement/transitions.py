"""What the operator remembers after each thing that happens to a placed job.

Shared by the Kubernetes handler and the simulator so both count interruptions,
progress and failed pools the same way. Progress only grows by checkpointed work:
an interruption loses everything since the last checkpoint (see ``progress``).
"""

from gpufinops.core.clock import moved_with_the_clock
from gpufinops.core.placement.model import (
    UNAVAILABLE_MEMORY_SECONDS,
    JobProfile,
    Placement,
    PlacementMemory,
)
from gpufinops.core.placement.progress import checkpointed, run_work_seconds
from gpufinops.core.placement.windows import next_window_start, window_open_now

__all__ = [
    "clock_stepped",
    "fell_back",
    "interrupted",
    "next_window_start",
    "pending",
    "placed",
    "pool_unavailable",
    "window_open_now",
]


def clock_stepped(memory: PlacementMemory, stepped: float, now: float) -> PlacementMemory:
    """The memory after the wall clock ``stepped`` beyond the time that passed (``core.clock``).

    When the job was placed, since when its pods are pending and when pools failed
    move with the clock: a forward step neither credits work that was not done
    nor times a pending job out at once, a backward one delays nothing by the
    step and leaves no instant in the future. Start windows and deadlines are
    wall-clock times the user chose, and stay as they are.
    """
    update: dict[str, object] = {
        "placed_at": moved_with_the_clock(memory.placed_at, stepped, now),
        "pending_since": moved_with_the_clock(memory.pending_since, stepped, now),
        "unavailable_pools": {
            pool: min(at + stepped, now) for pool, at in memory.unavailable_pools.items()
        },
    }
    if all(getattr(memory, key) == value for key, value in update.items()):
        return memory
    return memory.model_copy(update=update)


def placed(memory: PlacementMemory, placement: Placement, now: float) -> PlacementMemory:
    """The job was unsuspended on ``placement.pool`` at ``now``."""
    if placement.pool is None:
        raise ValueError(f"cannot place a job on no pool: {placement.reason}")
    return memory.model_copy(
        update={
            "pool": placement.pool,
            "capacity_type": placement.capacity_type,
            "placed_at": now,
            "attempts": memory.attempts + 1,
            "pending_since": None,
        }
    )


def _saved(memory: PlacementMemory, job: JobProfile, now: float) -> float:
    return memory.progress_seconds + checkpointed(job, run_work_seconds(job, memory, now))


def interrupted(memory: PlacementMemory, job: JobProfile, now: float) -> PlacementMemory:
    """A node of the job was reclaimed; its pods restart on the same placement."""
    return memory.model_copy(
        update={
            "interruptions": memory.interruptions + 1,
            "progress_seconds": _saved(memory, job, now),
            "placed_at": now,
        }
    )


def pool_unavailable(memory: PlacementMemory, pool: str, now: float) -> PlacementMemory:
    """``pool`` failed to provide capacity at ``now``; failures too old to matter are dropped."""
    recent = {
        name: t
        for name, t in memory.unavailable_pools.items()
        if now - t < UNAVAILABLE_MEMORY_SECONDS and name != pool
    }
    recent[pool] = now
    return memory.model_copy(update={"unavailable_pools": recent})


def fell_back(
    memory: PlacementMemory, now: float, job: JobProfile | None = None
) -> PlacementMemory:
    """The job leaves spot for good: suspended, keeping its checkpointed work.

    ``job`` gives the checkpoint interval; without it the current run's work is
    counted as lost, which can only make the deadline estimate more cautious.
    ``pool`` is kept so the caller can still say where the job came from.
    """
    saved = memory.progress_seconds if job is None else _saved(memory, job, now)
    return memory.model_copy(
        update={
            "on_demand_only": True,
            "progress_seconds": saved,
            "placed_at": None,
            "pending_since": None,
        }
    )


def moved(memory: PlacementMemory, now: float, job: JobProfile) -> PlacementMemory:
    """The job is suspended to move between spot and on-demand (or to wait for spot)
    by the deadline rule: it keeps its checkpointed work and may return to spot."""
    return memory.model_copy(
        update={"progress_seconds": _saved(memory, job, now), "placed_at": None,
                "pending_since": None}
    )  # fmt: skip


def pending(memory: PlacementMemory, now: float, unschedulable: bool) -> PlacementMemory:
    """Start the pending clock when pods first become unschedulable; stop it when not."""
    if unschedulable:
        if memory.pending_since is not None:
            return memory
        return memory.model_copy(update={"pending_since": now})
    if memory.pending_since is None:
        return memory
    return memory.model_copy(update={"pending_since": None})
