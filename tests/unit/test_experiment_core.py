"""Experiment sandboxes: shut down at the lifetime or after the idle timer, exactly at
the thresholds; missing utilisation never counts as idle; a woken sandbox starts over."""

from hypothesis import given
from hypothesis import strategies as st

from gpufinops.api.experiment import Experiment
from gpufinops.core.experiment import (
    Action,
    ExperimentObservation,
    ExperimentState,
    Reason,
    decide_experiment,
)

T0 = 1_790_000_000.0


def experiment(**extra: object) -> Experiment:
    return Experiment.model_validate({"targetRef": {"kind": "Deployment", "name": "nb"}, **extra})


def busy(util: float | None = 90.0, pods: int = 1) -> ExperimentObservation:
    return ExperimentObservation(running=True, replicas=1, gpu_pods=pods, peak_utilization=util)


def test_lifetime_shuts_down_exactly_at_max_lifetime() -> None:
    exp = experiment(maxLifetimeSeconds=3600)
    state = ExperimentState(active_since=T0)
    assert decide_experiment(exp, state, busy(), T0 + 3599).action == Action.NONE
    decision = decide_experiment(exp, state, busy(), T0 + 3600)
    assert decision.action == Action.SHUT_DOWN
    assert decision.reason == Reason.MAX_LIFETIME
    assert decision.state.shut_down_at == T0 + 3600
    assert decision.state.replicas_before == 1


def test_idle_timer_runs_only_while_utilisation_stays_low() -> None:
    exp = experiment(idle={"afterSeconds": 600, "gpuUtilizationBelowPercent": 5})
    state = ExperimentState(active_since=T0)
    d = decide_experiment(exp, state, busy(2.0), T0 + 10)
    assert d.action == Action.NONE and d.state.idle_since == T0 + 10
    # A spike resets the timer.
    d = decide_experiment(exp, d.state, busy(40.0), T0 + 300)
    assert d.state.idle_since is None
    d = decide_experiment(exp, d.state, busy(1.0), T0 + 400)
    assert decide_experiment(exp, d.state, busy(1.0), T0 + 999).action == Action.NONE
    d = decide_experiment(exp, d.state, busy(1.0), T0 + 1000)
    assert d.action == Action.SHUT_DOWN and d.reason == Reason.IDLE
    assert "below 5 %" in d.message


def test_unknown_utilisation_holds_the_timer() -> None:
    exp = experiment(idle={"afterSeconds": 60, "gpuUtilizationBelowPercent": 5})
    state = ExperimentState(active_since=T0, idle_since=T0)
    d = decide_experiment(exp, state, busy(None), T0 + 10_000)
    assert d.action == Action.NONE
    assert d.state == state
    assert "unknown" in d.message


def test_without_a_threshold_idle_means_no_running_gpu_pods() -> None:
    exp = experiment(idle={"afterSeconds": 60})
    state = ExperimentState(active_since=T0)
    assert decide_experiment(exp, state, busy(None), T0 + 10_000).action == Action.NONE
    d = decide_experiment(exp, state, busy(None, pods=0), T0)
    d = decide_experiment(exp, d.state, busy(None, pods=0), T0 + 60)
    assert d.action == Action.SHUT_DOWN and "no running GPU pods" in d.message


def test_a_woken_sandbox_restarts_its_timers() -> None:
    exp = experiment(maxLifetimeSeconds=3600)
    down = ExperimentState(active_since=T0, shut_down_at=T0 + 3600, reason=Reason.MAX_LIFETIME)
    asleep = ExperimentObservation(running=False, replicas=0, gpu_pods=0, peak_utilization=None)
    assert decide_experiment(exp, down, asleep, T0 + 5000).action == Action.NONE
    d = decide_experiment(exp, down, busy(), T0 + 5000)
    assert d.action == Action.WOKEN
    assert d.state == ExperimentState(active_since=T0 + 5000)
    # The fresh lifetime counts from the wake, not from creation.
    assert decide_experiment(exp, d.state, busy(), T0 + 5001).action == Action.NONE


@given(
    util=st.one_of(st.none(), st.floats(0, 100)),
    pods=st.integers(0, 8),
    elapsed=st.floats(0, 10**7),
    lifetime=st.one_of(st.none(), st.integers(60, 10**6)),
)
def test_shutdown_only_with_a_reason_that_holds(
    util: float | None, pods: int, elapsed: float, lifetime: int | None
) -> None:
    exp = experiment(
        maxLifetimeSeconds=lifetime, idle={"afterSeconds": 600, "gpuUtilizationBelowPercent": 5}
    )
    state = ExperimentState(active_since=T0, idle_since=T0)
    obs = ExperimentObservation(running=True, replicas=2, gpu_pods=pods, peak_utilization=util)
    d = decide_experiment(exp, state, obs, T0 + elapsed)
    if d.action == Action.SHUT_DOWN:
        over_lifetime = lifetime is not None and elapsed >= lifetime
        idle_long = elapsed >= 600 and (pods == 0 or (util is not None and util < 5))
        assert over_lifetime or idle_long
    elif lifetime is not None and elapsed >= lifetime:
        raise AssertionError("the lifetime must always shut a running sandbox down")


def test_budget_suspension_shuts_down_and_keeps_it_down() -> None:
    exp = experiment()
    state = ExperimentState(active_since=T0)
    d = decide_experiment(exp, state, busy(), T0 + 5, budget_suspend=True)
    assert d.action == Action.SHUT_DOWN and d.reason == Reason.BUDGET
    # Woken while the budget still says Suspend: down again, not "woken".
    again = decide_experiment(exp, d.state, busy(), T0 + 50, budget_suspend=True)
    assert again.action == Action.SHUT_DOWN
    # Once the budget allows it, waking works.
    assert decide_experiment(exp, d.state, busy(), T0 + 60).action == Action.WOKEN
