"""Training placement when the wall clock jumps (an NTP step, a VM resumed).

When a Job was placed and since when its pods are pending are wall-clock instants
in status; the loop moves them with a clock step, so a forward step neither
credits work that was not done (which would hide a deadline at risk) nor times
out a pending Job at once (an expensive, needless move to on-demand), and a
backward step leaves nothing in the future. Start windows are wall-clock times the
user chose: whatever the clock does, the next start is never before now and is
inside a window.
"""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.test_clock_idle_timers import clock_looks
from tests.unit.test_training_controller import Harness, spec

from gpufinops.adapters.jobs import PodView
from gpufinops.api.training import Spot, StartWindow
from gpufinops.core.placement.fallback import fallback_verdict, remaining_seconds
from gpufinops.core.placement.model import JobProfile, PlacementMemory, PoolOffer
from gpufinops.core.placement.progress import run_work_seconds
from gpufinops.core.placement.transitions import clock_stepped, pending
from gpufinops.core.placement.windows import next_window_start, window_open_now

T0 = 1_790_000_000.0
HOUR = 3600.0
JOB = JobProfile(gpus=4, expected_duration_seconds=10 * HOUR, submitted_at=T0)
SPOT_OFFER = PoolOffer(name="l4-spot", capacity_type="spot", gpus_per_node=4,
                       gpu_hourly_price_usd=0.5)  # fmt: skip


def test_a_forward_step_credits_no_work_that_was_not_done() -> None:
    memory = PlacementMemory(pool="l4-spot", placed_at=T0, attempts=1)
    now = T0 + 600 + 5 * HOUR
    moved = clock_stepped(memory, 5 * HOUR, now)
    assert run_work_seconds(JOB, moved, now) == pytest.approx(600)
    assert remaining_seconds(JOB, moved, now) == pytest.approx(10 * HOUR - 600)


def test_a_forward_step_does_not_time_out_a_pending_job() -> None:
    memory = pending(PlacementMemory(pool="l4-spot", placed_at=T0, attempts=1), T0 + 10, True)
    now = T0 + 20 + HOUR
    moved = clock_stepped(memory, HOUR, now)
    verdict = fallback_verdict(JOB, Spot(), moved, SPOT_OFFER, now, pending=True)
    assert not verdict.fall_back, verdict.message
    later = now + Spot().pending_timeout_seconds - 10
    assert (
        fallback_verdict(JOB, Spot(), moved, SPOT_OFFER, later, pending=True).trigger
        == "PendingTimeout"
    )


def test_a_backward_step_leaves_nothing_in_the_future_and_delays_nothing_by_the_step() -> None:
    memory = PlacementMemory(
        pool="l4-spot", placed_at=T0, attempts=1, pending_since=T0 + 100,
        unavailable_pools={"l4-on-demand": T0 + 50},
    )  # fmt: skip
    now = T0 + 130 - HOUR
    moved = clock_stepped(memory, -HOUR, now)
    assert moved.placed_at == T0 - HOUR and moved.pending_since == T0 + 100 - HOUR
    assert moved.unavailable_pools == {"l4-on-demand": T0 + 50 - HOUR}
    assert run_work_seconds(JOB, moved, now) == pytest.approx(130)
    # Instants left in the future by a step nobody saw (the operator was down).
    unseen = clock_stepped(memory, 0.0, T0 - HOUR)
    assert unseen.placed_at == unseen.pending_since == T0 - HOUR


def test_no_step_leaves_the_memory_as_it_is() -> None:
    memory = PlacementMemory(pool="l4-spot", placed_at=T0, attempts=1)
    assert clock_stepped(memory, 0.0, T0 + 10) is memory


@given(looks=clock_looks(900, 30, 20))
def test_whatever_the_clock_does_work_and_waiting_never_exceed_the_time_that_passed(
    looks: list[tuple[float, float]],
) -> None:
    """``looks``: (seconds that really pass, wall-clock step) between two looks."""
    wall, passed_total = T0, 0.0
    memory = pending(PlacementMemory(pool="l4-spot", placed_at=T0, attempts=1), T0, True)
    for passed, step in looks:
        wall += passed + step
        passed_total += passed
        memory = clock_stepped(memory, step, wall)
        assert 0.0 <= run_work_seconds(JOB, memory, wall) <= passed_total + 1e-6
        assert memory.pending_since is not None
        assert 0.0 <= wall - memory.pending_since <= passed_total + 1e-6
        verdict = fallback_verdict(JOB, Spot(), memory, SPOT_OFFER, wall, pending=True)
        if verdict.fall_back:
            assert passed_total >= Spot().pending_timeout_seconds - 1e-6, "never early"


WINDOWS = (StartWindow(cron="0 22 * * *", duration_seconds=4 * 3600, timezone="Europe/Paris"),)


@given(now=st.floats(T0 - 400 * 86_400, T0 + 400 * 86_400))
def test_the_next_start_is_never_before_now_and_always_in_a_window(now: float) -> None:
    start = next_window_start(WINDOWS, now)
    assert start is not None and start >= now
    assert window_open_now(WINDOWS, start)
    assert start - now <= 86_400


def test_a_placed_job_is_not_moved_to_on_demand_by_a_forward_step() -> None:
    h = Harness()
    c = h.controller()
    c.tick(spec(), h.world(T0))
    c.tick(spec(), h.world(T0 + 1))
    assert h.status["placement"]["pool"] == "l4-spot"
    stuck = PodView(uid="p1", name="p1", node=None, phase="Pending", unschedulable=True,
                    disrupted=None, terminating=False)  # fmt: skip
    c.tick(spec(), h.world(T0 + 10, (stuck,)))
    # The VM running the operator is resumed an hour later (or NTP steps it).
    world = h.world(T0 + 20 + HOUR, (stuck,))
    world.stepped = HOUR
    c.tick(spec(), world)
    assert "FallingBackToOnDemand" not in h.reasons()
    assert h.jobs.bodies["train"]["spec"]["suspend"] is False
    pending_since = datetime.fromisoformat(h.status["placement"]["pendingSince"])
    assert pending_since == datetime.fromtimestamp(T0 + 10 + HOUR, tz=UTC)
