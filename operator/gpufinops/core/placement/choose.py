"""Choosing a node pool for a training job: the cheapest one expected to finish in time.

Expected run time under interruptions
-------------------------------------
Interruptions of a job's nodes are a Poisson process with rate
``λ = interruptions_per_hour * nodes / 3600`` per second, where ``nodes`` is the
number of nodes the job's pods fill when packed (any node lost restarts every pod,
as in a gang-scheduled job). A stretch of ``s`` seconds of work that must run
without interruption, where each interruption costs ``R = restart_overhead_seconds``
plus the work done since the stretch began, takes in expectation::

    f(s) = (e^(λ·s) - 1) · (1/λ + R)                   (f(s) = s when λ = 0)

With checkpoints every ``c`` seconds the work ``W`` is ``k = ⌊W/c⌋`` stretches of
``c`` and one of ``W - k·c``, so ``T = k·f(c) + f(W - k·c)``; without checkpoints it
is one stretch, ``T = f(W)`` (a restart from zero). To first order
``f(s) ≈ s + λ·s·(R + s/2)``: expected interruptions ``λ·s`` each costing the restart
plus half the stretch, i.e. ``c/2`` with checkpoints and the expected work done
since start without them. The exact form is used because it stays right when
``λ·s`` is not small, which is exactly when it matters (long jobs, no checkpoints).

Without an expected duration the cost cannot be known, so pools are ranked by
their hourly GPU price times the overhead ratio ``T/W`` for one checkpoint
interval (exact for long jobs) or, with no checkpoints, for one hour of work.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gpufinops.api.training import Spot
from gpufinops.core.placement.model import (
    UNAVAILABLE_MEMORY_SECONDS,
    JobProfile,
    Placement,
    PlacementMemory,
    PoolOffer,
)
from gpufinops.core.placement.progress import checkpoint_interval
from gpufinops.core.placement.windows import next_window_start, window_open_now

REFERENCE_WORK_SECONDS = 3600.0
"""Work used to price interruptions of a job of unknown length that never checkpoints."""

_MAX_EXPONENT = 700.0
"""Beyond this ``e^x`` overflows a float; the expected time is then infinite."""


def gpus_per_pod(job: JobProfile) -> int:
    """Whole GPUs one pod needs on a node (a fractional share still needs a GPU)."""
    return max(0, math.ceil(job.gpus / job.pods - 1e-9))


def fits(job: JobProfile, offer: PoolOffer) -> bool:
    return gpus_per_pod(job) <= offer.gpus_per_node


def nodes_needed(job: JobProfile, offer: PoolOffer) -> int:
    """Nodes the pods fill when packed: each of them can interrupt the whole job."""
    per_pod = gpus_per_pod(job)
    if per_pod == 0:
        return 1
    pods_per_node = max(1, offer.gpus_per_node // per_pod)
    return math.ceil(job.pods / pods_per_node)


def _stretch(seconds: float, rate: float, restart: float) -> float:
    if seconds <= 0:
        return 0.0
    if rate <= 0:
        return seconds
    exponent = rate * seconds
    if exponent > _MAX_EXPONENT:
        return math.inf
    # (e^x - 1)/rate written as s * (e^x - 1)/x: no 1/rate blow-up for tiny rates.
    growth = math.expm1(exponent) / exponent if exponent > 0 else 1.0
    return max(seconds, seconds * growth + restart * math.expm1(exponent))


def interruption_rate(job: JobProfile, offer: PoolOffer) -> float:
    """Interruptions per second of the job on ``offer``: any of its nodes going ends the
    run, so the pool's rate per node times the nodes it needs (λ of the module doc)."""
    return offer.interruptions_per_hour * nodes_needed(job, offer) / 3600.0


def expected_run_seconds(job: JobProfile, offer: PoolOffer, remaining_seconds: float) -> float:
    """Wall time to do ``remaining_seconds`` of work on ``offer`` (see the module doc)."""
    if remaining_seconds <= 0:
        return 0.0
    rate = interruption_rate(job, offer)
    restart = job.restart_overhead_seconds
    interval = checkpoint_interval(job)
    if interval is None or interval >= remaining_seconds:
        return _stretch(remaining_seconds, rate, restart)
    whole = math.floor(remaining_seconds / interval)
    rest = remaining_seconds - whole * interval
    return whole * _stretch(interval, rate, restart) + _stretch(rest, rate, restart)


def expected_cost_usd(job: JobProfile, offer: PoolOffer, remaining_seconds: float) -> float:
    """GPU-hours held until done (including lost work and restarts) times the price."""
    hours = expected_run_seconds(job, offer, remaining_seconds) / 3600.0
    return offer.gpu_hourly_price_usd * job.gpus * hours


def overhead_ratio(job: JobProfile, offer: PoolOffer) -> float:
    """Expected wall time per second of work, for ranking jobs of unknown length."""
    work = checkpoint_interval(job) or REFERENCE_WORK_SECONDS
    return expected_run_seconds(job, offer, work) / work


def work_left(job: JobProfile, memory: PlacementMemory) -> float | None:
    """Work still to do from the last checkpoint (None: the duration is unknown)."""
    if job.expected_duration_seconds is None:
        return None
    return max(0.0, job.expected_duration_seconds - memory.progress_seconds)


def clock(t: float) -> str:
    """A time for a human reading an Event."""
    if not math.isfinite(t) or abs(t) > 1e11:
        return "never" if t > 0 else "the distant past"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(usd: float) -> str:
    return "unbounded" if math.isinf(usd) else f"${usd:,.2f}"


@dataclass(frozen=True)
class _Candidate:
    offer: PoolOffer
    index: int
    run_seconds: float | None
    """Expected wall time until done, start-up included; None: unknown duration."""
    score: float

    @property
    def cost(self) -> float | None:
        if self.run_seconds is None:
            return None
        return self.score


def _excluded(
    job: JobProfile, offer: PoolOffer, spot: Spot, memory: PlacementMemory, now: float
) -> str | None:
    """Why ``offer`` cannot take the job at all, or None."""
    if not fits(job, offer):
        return f"needs {gpus_per_pod(job)} GPUs per pod, nodes have {offer.gpus_per_node}"
    failed = memory.unavailable_pools.get(offer.name)
    if failed is not None and now - failed < UNAVAILABLE_MEMORY_SECONDS:
        return f"had no capacity {now - failed:.0f} s ago"
    if offer.spot:
        if not spot.enabled:
            return "spot is disabled"
        if memory.on_demand_only:
            return "the job fell back to on-demand"
        if memory.interruptions >= spot.max_interruptions:
            limit = spot.max_interruptions
            return f"{memory.interruptions} interruptions reached the limit of {limit}"
    return None


def _candidate(
    job: JobProfile, offer: PoolOffer, index: int, work: float | None, startup: float
) -> _Candidate:
    if work is None:
        score = offer.gpu_hourly_price_usd * overhead_ratio(job, offer)
        return _Candidate(offer, index, None, score)
    run = startup + expected_run_seconds(job, offer, work)
    return _Candidate(offer, index, run, offer.gpu_hourly_price_usd * job.gpus * run / 3600.0)


def _on_demand_cost(
    job: JobProfile, offers: Sequence[PoolOffer], work: float | None, startup: float
) -> tuple[float, str] | None:
    """The expected cost on the cheapest on-demand pool the job fits, and its name."""
    if work is None:
        return None
    best: tuple[float, str] | None = None
    for offer in offers:
        if offer.spot or not fits(job, offer):
            continue
        cost = offer.gpu_hourly_price_usd * job.gpus * (startup + work) / 3600.0
        if best is None or cost < best[0]:
            best = (cost, offer.name)
    return best


def _describe(best: _Candidate, baseline: tuple[float, str] | None) -> str:
    offer = best.offer
    text = f"{offer.name}: {offer.capacity_type} ${offer.gpu_hourly_price_usd:.2f}/GPU-h"
    if best.cost is None:
        return text + ", cheapest allowed pool (duration unknown, ranked by hourly price)"
    text += f", expected {_money(best.cost)}"
    if baseline is not None and baseline[1] != offer.name:
        text += f" vs {_money(baseline[0])} on {baseline[1]}"
    return text


def choose_pool(
    job: JobProfile,
    offers: Sequence[PoolOffer],
    spot: Spot,
    memory: PlacementMemory,
    now: float,
) -> Placement:
    """The pool to run the job on now (or at ``start_at``), with the reason in words.

    ``offers`` are the pools the workload allows, in its order, which breaks ties.
    """
    work = work_left(job, memory)
    # A job placed before pays the restart (rescheduling, checkpoint reload) again.
    startup = job.restart_overhead_seconds if memory.attempts > 0 else 0.0
    skipped: list[str] = []
    eligible: list[_Candidate] = []
    late_spot: list[_Candidate] = []
    for index, offer in enumerate(offers):
        why = _excluded(job, offer, spot, memory, now)
        if why is not None:
            skipped.append(f"{offer.name} ({why})")
            continue
        cand = _candidate(job, offer, index, work, startup)
        if offer.spot and job.deadline is not None and cand.run_seconds is not None:
            finish = now + cand.run_seconds
            if finish > job.deadline:
                skipped.append(
                    f"{offer.name} (expected finish {clock(finish)} on spot is after the "
                    f"deadline {clock(job.deadline)})"
                )
                late_spot.append(cand)
                continue
        eligible.append(cand)
    notes: list[str] = []
    if not eligible and late_spot:
        # Running late beats not running: with no on-demand pool allowed, spot is all there is.
        eligible = late_spot
        notes.append("no allowed on-demand pool can take it, so it runs on spot despite the risk")
    if not eligible:
        listed = "; ".join(skipped) or "no node pools are allowed"
        return Placement(pool=None, reason=f"no allowed pool can run the job: {listed}")
    best = min(eligible, key=lambda c: (c.score, c.index))
    baseline = _on_demand_cost(job, offers, work, startup)
    start_at = None
    if job.start_windows and not window_open_now(job.start_windows, now):
        start_at = next_window_start(job.start_windows, now)
        if start_at is not None and job.deadline is not None and best.run_seconds is not None:
            latest = job.deadline - best.run_seconds
            if start_at > latest:
                notes.append(
                    f"starting now, outside the start windows: waiting for the next one at "
                    f"{clock(start_at)} would miss the deadline {clock(job.deadline)} "
                    f"(latest safe start {clock(latest)})"
                )
                start_at = None
        if start_at is not None:
            notes.append(f"waiting for the start window at {clock(start_at)}")
    if job.deadline is not None and best.run_seconds is not None:
        finish = (start_at or now) + best.run_seconds
        if finish > job.deadline:
            notes.append(
                f"expected finish {clock(finish)} is after the deadline {clock(job.deadline)}"
            )
    if skipped:
        notes.append("skipped " + "; ".join(skipped))
    reason = "; ".join([_describe(best, baseline), *notes])
    return Placement(
        pool=best.offer.name,
        capacity_type=best.offer.capacity_type,
        start_at=start_at,
        expected_cost_usd=best.cost if best.cost is not None and math.isfinite(best.cost) else None,
        on_demand_cost_usd=None if baseline is None else baseline[0],
        reason=reason,
    )
