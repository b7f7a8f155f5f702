"""Experiment sandbox timers when the wall clock jumps, and a sandbox scaled down by hand.

The lifetime and the idle timer are wall-clock instants in status; the loop tells
the core how far the clock stepped between two looks and the instants move with
it. So a forward jump shuts nothing down that was not running or idle that long,
a backward jump neither fires early nor adds the jump to the wait, and no timer
is ever negative. A sandbox found at zero that the operator did not scale down
(by its user, or by an operator killed before it could record it) starts a fresh
lifetime when woken, instead of being shut down again at once.
"""

from hypothesis import given
from tests.unit.test_clock_idle_timers import clock_looks
from tests.unit.test_experiment_controller import RUNNING, Recorder, spec
from tests.unit.test_experiment_core import busy, experiment

from gpufinops.api.experiment import Experiment
from gpufinops.controllers.experiment import ExperimentController
from gpufinops.core.experiment import (
    Action,
    ExperimentObservation,
    ExperimentState,
    Reason,
    decide_experiment,
)

T0 = 1_790_000_000.0
HOUR = 3600.0
LIFETIME = {"maxLifetimeSeconds": 3600}
IDLE = {"idle": {"afterSeconds": 600}}
DOWN = ExperimentObservation(running=False, replicas=0, gpu_pods=0, peak_utilization=None)
IDLE_POD = ExperimentObservation(running=True, replicas=1, gpu_pods=0, peak_utilization=None)


def test_a_forward_jump_does_not_end_a_lifetime_early() -> None:
    exp = experiment(**LIFETIME)
    d = decide_experiment(exp, ExperimentState(active_since=T0), busy(), T0 + 1800 + 2 * HOUR,
                       stepped=2 * HOUR)  # fmt: skip
    assert d.action == Action.NONE
    assert d.state.active_since == T0 + 2 * HOUR, "the lifetime has run 30 min, not 2.5 h"
    assert decide_experiment(exp, d.state, busy(), T0 + 2 * HOUR + 3599).action == Action.NONE
    assert (
        decide_experiment(exp, d.state, busy(), T0 + 2 * HOUR + 3600).reason == Reason.MAX_LIFETIME
    )


def test_a_forward_jump_does_not_make_a_sandbox_idle_for_longer_than_it_was_seen() -> None:
    exp = experiment(**IDLE)
    d = decide_experiment(exp, ExperimentState(active_since=T0), IDLE_POD, T0)
    d = decide_experiment(exp, d.state, IDLE_POD, T0 + 60 + HOUR, stepped=HOUR)
    assert d.action == Action.NONE and d.state.idle_since == T0 + HOUR
    assert decide_experiment(exp, d.state, IDLE_POD, T0 + HOUR + 600).reason == Reason.IDLE


def test_a_backward_jump_neither_fires_early_nor_waits_for_the_clock_to_catch_up() -> None:
    exp = experiment(**LIFETIME, **IDLE)
    state = ExperimentState(active_since=T0, idle_since=T0 + 100)
    d = decide_experiment(exp, state, IDLE_POD, T0 + 130 - HOUR, stepped=-HOUR)
    assert d.action == Action.NONE
    assert d.state.active_since == T0 - HOUR and d.state.idle_since == T0 + 100 - HOUR
    assert decide_experiment(exp, d.state, IDLE_POD, T0 + 699 - HOUR).action == Action.NONE
    assert decide_experiment(exp, d.state, IDLE_POD, T0 + 700 - HOUR).reason == Reason.IDLE


def test_timers_left_in_the_future_by_an_unseen_step_count_from_now() -> None:
    exp = experiment(**LIFETIME, **IDLE)
    state = ExperimentState(active_since=T0 + HOUR, idle_since=T0 + HOUR)
    d = decide_experiment(exp, state, IDLE_POD, T0)
    assert d.action == Action.NONE
    assert d.state.active_since == T0 and d.state.idle_since == T0
    assert "shuts down in 600s" in d.message


@given(looks=clock_looks(600, 30, 25))
def test_whatever_the_clock_does_nothing_shuts_down_before_its_time_really_passed(
    looks: list[tuple[float, float]],
) -> None:
    """``looks``: (seconds that really pass, wall-clock step) between two looks."""
    exp = experiment(maxLifetimeSeconds=3600, idle={"afterSeconds": 1200})
    wall, passed_total = T0, 0.0
    state = ExperimentState(active_since=wall)
    for passed, step in looks:
        wall += passed + step
        passed_total += passed
        d = decide_experiment(exp, state, IDLE_POD, wall, stepped=step)
        assert d.state.active_since <= wall
        assert d.state.idle_since is None or d.state.idle_since <= wall
        if d.action == Action.SHUT_DOWN:
            limit = 3600 if d.reason == Reason.MAX_LIFETIME else 1200
            assert passed_total >= limit - 1e-6, (d.reason, passed_total)
            return
        state = d.state


def test_a_sandbox_scaled_down_by_hand_is_woken_with_a_fresh_lifetime() -> None:
    exp: Experiment = experiment(**LIFETIME)
    d = decide_experiment(exp, ExperimentState(active_since=T0), DOWN, T0 + 600)
    assert d.action == Action.NONE and d.state.shut_down_at == T0 + 600
    assert d.state.reason is None, "not shut down by the operator"
    d = decide_experiment(exp, d.state, DOWN, T0 + 5 * HOUR)
    assert d.action == Action.NONE and d.state.shut_down_at == T0 + 600
    woken = decide_experiment(exp, d.state, busy(), T0 + 5 * HOUR)
    assert woken.action == Action.WOKEN and woken.state == ExperimentState(
        active_since=T0 + 5 * HOUR
    )
    assert decide_experiment(exp, woken.state, busy(), T0 + 6 * HOUR - 1).action == Action.NONE


def test_a_shutdown_cut_short_by_a_kill_is_recorded_and_the_wake_is_not_undone() -> None:
    # Killed after scaling to zero, before writing status: the next operator finds
    # status without a shutdown, and the sandbox at zero.
    rec = Recorder()
    fresh = ExperimentController("ns", "exp", T0, rec.effects())
    fresh.tick(spec(), DOWN, {"sandbox": {"activeSince": "2026-09-21T00:00:00+00:00"}},
               T0 + 900, 4)  # fmt: skip
    assert rec.status["sandbox"]["shutDownAt"] is not None
    assert rec.shutdowns == 0
    fresh.tick(spec(), RUNNING, rec.status, T0 + 2000, 5)
    assert rec.events == ["SandboxWoken"]
    fresh.tick(spec(), RUNNING, rec.status, T0 + 2001, 5)
    assert rec.shutdowns == 0, "a fresh lifetime from the wake"


def test_the_loop_passes_the_clock_step_to_the_timers() -> None:
    rec = Recorder()
    c = ExperimentController("ns", "exp", T0, rec.effects())
    c.tick(spec(), RUNNING, None, T0 + 300, 3)
    c.tick(spec(), RUNNING, None, T0 + 330 + HOUR, 3, stepped=HOUR)
    assert rec.shutdowns == 0, "330 s of a 600 s lifetime"
    c.tick(spec(), RUNNING, None, T0 + 600 + HOUR, 3)
    assert rec.shutdowns == 1
