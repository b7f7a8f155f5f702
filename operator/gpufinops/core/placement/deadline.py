"""Spot or on-demand now, for a job with a deadline: the switching rule.

A job with a deadline is worth running on spot only while a lost attempt can still
be made good on on-demand. The rule follows Uniform Progress ("Can't Be Late",
NSDI '24) with the margins a real job needs:

- **Safety net.** When the time left is no more than the work left (with a margin
  for an underestimated duration) plus two restarts, the job goes to on-demand
  and stays there: one more lost attempt would miss the deadline.
- **Exploitation.** On spot, stay while the time left still covers the work left,
  the work a preemption would lose (up to a checkpoint interval, all of it
  without checkpoints) and a restart.
- **Uniform progress.** Idle (spot not obtainable), wait only while progress is no
  more than ``BEHIND_TOLERANCE`` behind the straight line from submission to the
  deadline; further behind, run on on-demand. On on-demand, stay until progress is
  ahead of that line two restarts from now (the hysteresis that stops flapping),
  then return to spot when it is obtainable, or wait for it.

Everything is in seconds of the job's own clock; ``expected`` is the user's
``expectedDurationSeconds``, the only duration the operator knows.
"""

from dataclasses import dataclass
from enum import StrEnum

DURATION_MARGIN = 0.25
"""How much longer than expected a job may run and still be on time: an expected
duration is an estimate (on the development traces, with estimates log-normally off
by sigma 0.1, 0.25 was the smallest margin that met every deadline)."""


BEHIND_TOLERANCE = 0.1
"""How far behind the straight line (a share of the expected work) a job without spot
still waits for it. Uniform Progress uses 0, which sends a job to on-demand in the
first step of any outage; on the development traces a tenth cut the cost at slack 2
and 3 by 2-4 % and changed no deadline, the safety net keeping each."""


class Capacity(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"
    WAIT = "wait"
    """Hold no capacity: spot is not obtainable and the job is ahead of schedule."""


@dataclass(frozen=True)
class DeadlineView:
    now: float
    submitted_at: float
    deadline: float
    expected_seconds: float
    """The expected duration of the whole job."""
    done_seconds: float
    """Work done so far (checkpointed plus the current run's)."""
    restart_seconds: float
    """Time a start costs before work resumes (scheduling, image, checkpoint load)."""
    at_risk_seconds: float
    """Work a preemption now would lose (since the last checkpoint)."""
    on: Capacity
    """What the job holds now (WAIT: nothing, or pods that cannot be scheduled)."""
    spot_obtainable: bool
    period_seconds: float = 0.0
    """Until the rule is asked again (the loop's period): a decision must still hold then."""


def margin(view: DeadlineView) -> float:
    """The share of the expected duration kept in reserve for an underestimate: half of
    the spare time the deadline gives, at most ``DURATION_MARGIN``. A tight deadline
    cannot hold a large reserve; spending all of it on insurance would leave none to
    wait for spot."""
    spare = (view.deadline - view.submitted_at) / max(view.expected_seconds, 1e-9) - 1.0
    return min(DURATION_MARGIN, max(0.0, spare / 2.0))


def _left(view: DeadlineView) -> float:
    """Work that may be left: as if the job ran ``margin`` longer than expected.

    Near the end of the expected duration the work left must not read as nothing: a
    job that still runs when its estimate is used up has an unknown rest, and the
    safety net has to have kept room for it.
    """
    return max(0.0, view.expected_seconds * (1.0 + margin(view)) - view.done_seconds)


def _line(view: DeadlineView, at: float) -> float:
    """Work a job progressing uniformly from submission would have done by ``at``."""
    span = max(view.deadline - view.submitted_at, 1e-9)
    return view.expected_seconds * min(1.0, max(0.0, (at - view.submitted_at) / span))


def must_run_on_demand(view: DeadlineView) -> bool:
    """The safety net: one more lost attempt (a restart, the work at risk) would be late."""
    time_left = view.deadline - view.now - view.period_seconds
    return time_left <= _left(view) + 2.0 * view.restart_seconds


def capacity_now(view: DeadlineView) -> Capacity:
    """Where the job should run now."""
    if view.done_seconds >= view.expected_seconds * (1.0 + margin(view)):
        # Longer than expected: how much is left is unknown, so what runs keeps running
        # and a job without capacity goes to on-demand rather than wait for spot.
        return Capacity.ON_DEMAND if view.on == Capacity.WAIT else view.on
    if must_run_on_demand(view):
        return Capacity.ON_DEMAND
    time_left = view.deadline - view.now - view.period_seconds
    left = _left(view)
    if view.on == Capacity.SPOT:
        # Exploitation: a running spot attempt is kept while losing it is affordable.
        affordable = time_left > left + view.at_risk_seconds + 2.0 * view.restart_seconds
        return Capacity.SPOT if affordable else Capacity.ON_DEMAND
    if view.on == Capacity.ON_DEMAND:
        ahead = view.done_seconds >= _line(view, view.now + 2.0 * view.restart_seconds)
        if not ahead:
            return Capacity.ON_DEMAND
        return Capacity.SPOT if view.spot_obtainable else Capacity.WAIT
    if view.spot_obtainable:
        return Capacity.SPOT
    behind = view.done_seconds < _line(view, view.now) - BEHIND_TOLERANCE * view.expected_seconds
    return Capacity.ON_DEMAND if behind else Capacity.WAIT
