"""Experiment sandboxes: shut down (scale to zero / suspend) when idle or too old.

Nothing is ever deleted. The user wakes a sandbox by giving it replicas again (or
unsuspending its Job); the operator notices and starts the timers afresh, so the
lifetime counts from the last wake, not from creation — waking an old sandbox
must not shut it down again at once.

Missing data is never idleness: when the utilisation cannot be read the idle
timer holds where it is, so an outage of the metrics pipeline shuts nothing down.

A sandbox found at zero that the operator did not shut down (the user scaled it
down, or an operator was killed between scaling it and recording that) is
recorded as shut down, so giving it replicas again is a wake like any other.

The timers are wall-clock instants (they survive restarts); a step of the wall
clock (``stepped``: an NTP step, a VM resumed) moves them with it, so neither the
lifetime nor the idle timer gains or loses the jump, and none is left in the future.
"""

from dataclasses import dataclass, replace
from enum import StrEnum

from gpufinops.api.experiment import Experiment
from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.core.clock import moved_with_the_clock
from gpufinops.core.cost.budget import Action as BudgetAction
from gpufinops.core.events import EventReason, PostEvent


class Action(StrEnum):
    NONE = "None"
    SHUT_DOWN = "ShutDown"
    WOKEN = "Woken"


class Reason(StrEnum):
    MAX_LIFETIME = "MaxLifetime"
    IDLE = "Idle"
    BUDGET = "BudgetExceeded"


@dataclass(frozen=True)
class ExperimentState:
    """The timers, persisted in ``status.sandbox``."""

    active_since: float
    idle_since: float | None = None
    shut_down_at: float | None = None
    reason: Reason | None = None
    replicas_before: int | None = None


@dataclass(frozen=True)
class ExperimentObservation:
    running: bool
    """The target has replicas (Deployment/StatefulSet) or is not suspended (Job)."""
    replicas: int
    gpu_pods: int
    """Running pods of the target that request GPUs."""
    peak_utilization: float | None
    """Highest GPU utilisation (percent) of its pods since the last look; None: unknown."""


@dataclass(frozen=True)
class ExperimentDecision:
    action: Action
    state: ExperimentState
    message: str
    reason: Reason | None = None


def _idle(experiment: Experiment, obs: ExperimentObservation) -> bool | None:
    """Whether this look counts as idle; None when it cannot be told (hold the timer)."""
    threshold = experiment.idle.gpu_utilization_below_percent
    if threshold is None:
        return obs.gpu_pods == 0
    if obs.gpu_pods == 0:
        return True  # nothing holds a GPU: idle whatever the exporter says
    if obs.peak_utilization is None:
        return None
    return obs.peak_utilization < threshold


def decide_experiment(
    experiment: Experiment,
    state: ExperimentState,
    obs: ExperimentObservation,
    now: float,
    *,
    budget_suspend: bool = False,
    stepped: float = 0.0,
) -> ExperimentDecision:
    """One look at a sandbox: shut it down, note that the user woke it, or wait.

    ``budget_suspend``: the budget's enforcement says Suspend; a running sandbox is
    shut down, and stays down while it does (waking it shuts it down again).
    ``stepped``: how far the wall clock jumped since the previous look, beyond the
    time that passed (see ``core.clock``).
    """
    state = _moved_with_the_clock(state, stepped, now)
    if budget_suspend and obs.running:
        return _shut_down(state, obs, now, Reason.BUDGET, "budget exceeded (enforcement Suspend)")
    if state.shut_down_at is not None:
        if obs.running:
            fresh = ExperimentState(active_since=now)
            return ExperimentDecision(
                Action.WOKEN, fresh, "woken by the user; idle and lifetime timers restart"
            )
        return ExperimentDecision(Action.NONE, state, "shut down; waiting to be woken")
    if not obs.running:
        # At zero, but not by us: nothing to shut down or time until it is woken, and
        # then its lifetime starts afresh (not from before it was scaled down).
        down = replace(state, idle_since=None, shut_down_at=now)
        return ExperimentDecision(Action.NONE, down, "not running: stopped outside gpufinops")

    lifetime = experiment.max_lifetime_seconds
    if lifetime is not None and now - state.active_since >= lifetime:
        return _shut_down(state, obs, now, Reason.MAX_LIFETIME,
                          f"maxLifetimeSeconds={lifetime} reached")  # fmt: skip

    idle = _idle(experiment, obs)
    after = experiment.idle.after_seconds
    if idle is None:
        return ExperimentDecision(
            Action.NONE, state, "GPU utilisation unknown: the idle timer holds"
        )
    if not idle:
        return ExperimentDecision(Action.NONE, replace(state, idle_since=None), "active")
    since = state.idle_since if state.idle_since is not None else now
    if now - since >= after:
        what = (
            f"GPU utilisation below {experiment.idle.gpu_utilization_below_percent:g} %"
            if experiment.idle.gpu_utilization_below_percent is not None and obs.gpu_pods
            else "no running GPU pods"
        )
        return _shut_down(state, obs, now, Reason.IDLE, f"idle ({what}) for {now - since:.0f}s")
    left = after - (now - since)
    return ExperimentDecision(
        Action.NONE, replace(state, idle_since=since), f"idle; shuts down in {left:.0f}s"
    )


def _moved_with_the_clock(state: ExperimentState, stepped: float, now: float) -> ExperimentState:
    active = moved_with_the_clock(state.active_since, stepped, now)
    return replace(
        state,
        active_since=now if active is None else active,
        idle_since=moved_with_the_clock(state.idle_since, stepped, now),
    )


def _shut_down(
    state: ExperimentState, obs: ExperimentObservation, now: float, reason: Reason, message: str
) -> ExperimentDecision:
    done = replace(state, shut_down_at=now, reason=reason, replicas_before=obs.replicas)
    return ExperimentDecision(Action.SHUT_DOWN, done, message, reason)


@dataclass(frozen=True)
class ShutDownTarget:
    """Scale the target to zero (Deployment, StatefulSet) or suspend it (Job)."""


@dataclass(frozen=True)
class ExperimentPlan:
    """What one tick does, in order, and what it records."""

    state: ExperimentState
    steps: tuple[ShutDownTarget | PostEvent, ...] = ()
    last_decision: tuple[str, str] | None = None
    """(action, reason) for ``status.lastDecision``, when the tick acted."""
    recommended: Reason | None = None
    """The shutdown last recommended (Recommend mode): said once, not every tick."""
    record: bool = True
    """False: nothing happened that status should show (a recommendation only)."""


def plan_experiment(
    spec: AIWorkloadSpec,
    state: ExperimentState,
    obs: ExperimentObservation,
    now: float,
    *,
    budget: BudgetAction | None,
    recommended: Reason | None = None,
    stepped: float = 0.0,
) -> ExperimentPlan:
    """The tick's plan: shut down (or, in Recommend mode, say it would), or note a wake."""
    experiment = spec.experiment
    assert experiment is not None
    target = f"{experiment.target_ref.kind}/{experiment.target_ref.name}"
    decision = decide_experiment(
        experiment, state, obs, now, budget_suspend=budget == BudgetAction.SUSPEND,
        stepped=stepped,
    )  # fmt: skip
    if decision.action == Action.SHUT_DOWN:
        suspend = experiment.target_ref.kind == "Job"
        verb = "suspend" if suspend else "scale to zero"
        if spec.mode == Mode.RECOMMEND:
            said: tuple[PostEvent, ...] = ()
            if recommended != decision.reason:
                message = f"would {verb} {target}: {decision.message}"
                said = (PostEvent("Normal", EventReason.RECOMMENDATION, message),)
            # Nothing changed: the state stays, the shutdown is asked again next tick.
            return ExperimentPlan(state, said, recommended=decision.reason, record=False)
        message = (
            f"{target} {'suspended' if suspend else 'scaled to zero'}: {decision.message}; "
            "set its replicas again to wake it"
        )
        steps = (ShutDownTarget(), PostEvent("Normal", EventReason.SANDBOX_SHUT_DOWN, message))
        return ExperimentPlan(decision.state, steps, ("ShutDown", decision.message), recommended)
    if decision.action == Action.WOKEN:
        event = PostEvent("Normal", EventReason.SANDBOX_WOKEN, f"{target} {decision.message}")
        return ExperimentPlan(decision.state, (event,), ("Woken", decision.message), recommended)
    return ExperimentPlan(decision.state, recommended=recommended)
