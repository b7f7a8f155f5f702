"""Idle-node timers when the wall clock jumps (an NTP step, a VM resumed).

The timers are wall-clock instants on the node (they must survive restarts), so
the loop reads the monotonic clock alongside and tells the core how far the wall
clock stepped between two looks. What is right, and tested here:

- a forward jump must not shut down a node that was not seen idle that long:
  the idle start moves with the clock, so only the idleness really observed counts;
- a backward jump must not fire a timer early, nor delay it by the jump, nor
  leave a start in the future (no negative idle time);
- the drain timeout behaves the same way;
- the idle GPU-time metric counts the time that really passed.
"""

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.node_actions import FakeNodeActions, node_body, pod_body

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.nodes import pod_record
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.clock import ClockSteps, Reading
from gpufinops.controllers.idle_nodes import PoolShutdown
from gpufinops.core.clock import moved_with_the_clock
from gpufinops.core.gpus import rules_of
from gpufinops.core.idle.rules import IdleTimer

T0 = 1_800_000_000.0
AFTER = 600.0
HOUR = 3600.0


def test_a_forward_jump_does_not_make_a_node_idle_for_longer_than_it_was_seen() -> None:
    timer = IdleTimer(None).observe(True, T0)
    timer = timer.observe(True, T0 + 30)
    # The clock steps an hour forward between two looks 30 s apart.
    now = T0 + 60 + HOUR
    timer = timer.observe(True, now, stepped=HOUR)
    assert not timer.expired(AFTER, now), "seen idle 60 s, not an hour"
    assert timer.idle_seconds(now) == pytest.approx(60)
    assert timer.expired(AFTER, now + AFTER - 60)


def test_a_node_first_seen_idle_after_a_jump_waits_the_whole_timer() -> None:
    busy = IdleTimer(None).observe(False, T0)
    timer = busy.observe(True, T0 + HOUR, stepped=HOUR)
    assert timer.since == T0 + HOUR
    assert not timer.expired(AFTER, T0 + HOUR + AFTER - 1)
    assert timer.expired(AFTER, T0 + HOUR + AFTER)


def test_a_backward_jump_neither_fires_early_nor_delays_by_the_jump() -> None:
    timer = IdleTimer(None).observe(True, T0).observe(True, T0 + 300)
    # 30 s later the clock reads an hour earlier.
    now = T0 + 330 - HOUR
    timer = timer.observe(True, now, stepped=-HOUR)
    assert timer.idle_seconds(now) == pytest.approx(330)
    assert not timer.expired(AFTER, now + AFTER - 331)
    assert timer.expired(AFTER, now + AFTER - 330), "not an hour late"


def test_a_start_left_in_the_future_is_brought_back_to_now() -> None:
    # A start recorded before the clock was stepped back while the operator was
    # down (no step seen): idleness is never negative, and counts from now.
    future = IdleTimer(T0 + HOUR)
    assert future.idle_seconds(T0) == 0.0
    timer = future.observe(True, T0)
    assert timer.since == T0
    assert not timer.expired(AFTER, T0 + AFTER - 1) and timer.expired(AFTER, T0 + AFTER)


def clock_looks(
    longest: float, days: float, most: int
) -> st.SearchStrategy[list[tuple[float, float]]]:
    """Looks of a loop: (seconds that really pass, wall-clock step) between two looks."""
    steps = st.floats(-days * 86_400, days * 86_400)
    return st.lists(st.tuples(st.floats(0.5, longest), steps), min_size=1, max_size=most)


@given(looks=clock_looks(120, 7, 30))
def test_whatever_the_clock_does_the_timer_counts_the_idleness_really_seen(
    looks: list[tuple[float, float]],
) -> None:
    """``looks``: (seconds that really pass, wall-clock step) between two looks."""
    wall, real_idle = T0, 0.0
    timer = IdleTimer(None).observe(True, wall)
    for passed, step in looks:
        wall += passed + step
        real_idle += passed
        timer = timer.observe(True, wall, stepped=step)
        seen = timer.idle_seconds(wall)
        assert 0.0 <= seen <= real_idle + 1e-6, "never more than seen, never negative"
        assert timer.since is not None and timer.since <= wall
        assert timer.expired(AFTER, wall) == (wall - timer.since >= AFTER)


def test_moving_an_instant_with_the_clock_keeps_durations_and_never_passes_now() -> None:
    assert moved_with_the_clock(None, HOUR, T0) is None
    assert moved_with_the_clock(T0 - 100, HOUR, T0 + HOUR) == T0 - 100 + HOUR
    assert moved_with_the_clock(T0 - 100, -HOUR, T0 - HOUR) == T0 - 100 - HOUR
    assert moved_with_the_clock(T0 + 5, 0.0, T0) == T0


class Clocks:
    def __init__(self) -> None:
        self.wall, self.mono = T0, 50.0

    def advance(self, passed: float, step: float = 0.0) -> None:
        self.wall += passed + step
        self.mono += passed


def test_the_loop_tells_a_step_from_time_passing() -> None:
    clocks = Clocks()
    steps = ClockSteps(lambda: clocks.wall, lambda: clocks.mono)
    assert steps.read() == Reading(T0, 0.0, 0.0)
    clocks.advance(30)
    assert steps.read() == Reading(T0 + 30, 0.0, 30.0)
    clocks.advance(30, step=HOUR)
    assert steps.read() == Reading(T0 + 60 + HOUR, HOUR, 30.0)
    clocks.advance(30, step=-2 * HOUR)
    assert steps.read() == Reading(T0 + 90 - HOUR, -2 * HOUR, 30.0)
    clocks.advance(30, step=0.2)  # jitter and slewing are not steps
    assert steps.read().stepped == 0.0


# ------------------------------------------------------------------ the pool's loop

CONFIG = OperatorConfig.model_validate({"nodePools": [{
    "name": "clock-test", "selector": {"pool": "clock-test"}, "instanceType": "g6.xlarge",
    "capacityType": "on-demand", "gpusPerNode": 1, "hourlyPriceUSD": 1.0,
    "idleShutdown": {"enabled": True, "dryRun": False, "idleAfterSeconds": int(AFTER),
                     "drainTimeoutSeconds": 300},
}]})  # fmt: skip


def _tick(annotations: dict[str, str], reading: Reading, pods: list[Any] | None = None,
          taint: bool = False) -> list[str]:  # fmt: skip
    actions = FakeNodeActions(node_body("gpu-1", annotations, taint=taint))
    actions.pods["gpu-1"] = list(pods or [])
    rules = rules_of(CONFIG)
    indexes = {"pdbs": {}, "pods_by_node": {"gpu-1": [pod_record(p, rules) for p in pods or []]}}
    loop = PoolShutdown("clock-test", CONFIG, actions, lambda body, event: None,
                        logging.getLogger("test"))  # fmt: skip
    asyncio.run(loop.tick([actions.body("gpu-1")], indexes, reading))
    return actions.calls


def test_after_a_forward_jump_the_node_is_not_shut_down_and_its_timer_moves() -> None:
    since = T0 - 60  # seen idle for a minute
    now = T0 + HOUR
    calls = _tick({"gpufinops.dev/idle-since": f"{since:.3f}"}, Reading(now, HOUR, 30.0))
    assert calls == [f"annotate {{'gpufinops.dev/idle-since': '{since + HOUR:.3f}'}}"]


def test_after_a_backward_jump_the_timer_start_never_stays_in_the_future() -> None:
    since = T0 - 60
    now = T0 - HOUR
    calls = _tick({"gpufinops.dev/idle-since": f"{since:.3f}"}, Reading(now, -HOUR, 30.0))
    assert calls == [f"annotate {{'gpufinops.dev/idle-since': '{since - HOUR:.3f}'}}"]


def test_idle_gpu_time_counts_the_time_that_passed_not_the_clock_step() -> None:
    before = metrics.IDLE_GPU_SECONDS.labels("clock-test")._value.get()
    _tick({"gpufinops.dev/idle-since": f"{T0:.3f}"}, Reading(T0 + HOUR, HOUR, 30.0))
    assert metrics.IDLE_GPU_SECONDS.labels("clock-test")._value.get() == before + 30.0


def test_a_drain_timeout_moves_with_the_clock() -> None:
    draining = {"gpufinops.dev/idle-shutdown-phase": "Draining",
                "gpufinops.dev/drain-started": f"{T0 - 100:.3f}",
                "gpufinops.dev/idle-since": f"{T0 - 2000:.3f}"}  # fmt: skip
    pod = pod_body("web", "gpu-1")
    # An hour's forward step 30 s into a drain that may last 300 s: not timed out.
    calls = _tick(draining, Reading(T0 + HOUR, HOUR, 30.0), [pod], taint=True)
    assert f"annotate {{'gpufinops.dev/drain-started': '{T0 - 100 + HOUR:.3f}'}}" in calls
    assert "taint False" not in calls and "evict web" in calls
    # Stepped back an hour: the drain start is not left in the future.
    calls = _tick(draining, Reading(T0 - HOUR, -HOUR, 30.0), [pod], taint=True)
    assert f"annotate {{'gpufinops.dev/drain-started': '{T0 - 100 - HOUR:.3f}'}}" in calls
    assert "taint False" not in calls
