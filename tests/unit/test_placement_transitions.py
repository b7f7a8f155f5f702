"""Placement memory bookkeeping: only checkpointed work survives, failures are remembered."""

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.training import StartWindow
from gpufinops.config.model import CapacityType
from gpufinops.core.placement.model import (
    UNAVAILABLE_MEMORY_SECONDS,
    JobProfile,
    Placement,
    PlacementMemory,
)
from gpufinops.core.placement.transitions import (
    fell_back,
    interrupted,
    next_window_start,
    pending,
    placed,
    pool_unavailable,
    window_open_now,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()  # a Monday, 12:00 UTC
HOUR = 3600.0
SPOT_PLACEMENT = Placement(pool="l4-spot", capacity_type=CapacityType.SPOT, reason="cheapest")


def job(**fields: object) -> JobProfile:
    base: dict[str, object] = {
        "gpus": 1.0,
        "expected_duration_seconds": 10 * HOUR,
        "checkpoint_interval_seconds": 1800.0,
        "restart_overhead_seconds": 300.0,
        "submitted_at": T0,
    }
    return JobProfile.model_validate(base | fields)


def test_placing_records_pool_time_and_attempt() -> None:
    memory = PlacementMemory(pending_since=T0 - 5)
    after = placed(memory, SPOT_PLACEMENT, T0)
    assert (after.pool, after.capacity_type, after.placed_at) == ("l4-spot", "spot", T0)
    assert after.attempts == 1 and after.pending_since is None
    assert memory.pool is None, "the old memory is unchanged"
    with pytest.raises(ValueError, match="no pool"):
        placed(memory, Placement(pool=None, reason="nothing fits"), T0)


def test_an_interruption_keeps_whole_checkpoints_only() -> None:
    memory = placed(PlacementMemory(), SPOT_PLACEMENT, T0)
    after = interrupted(memory, job(), T0 + 5000)  # 2 checkpoints (3600 s) + 1400 s lost
    assert after.progress_seconds == 3600
    assert after.interruptions == 1 and after.placed_at == T0 + 5000
    assert after.pool == "l4-spot"


def test_without_checkpoints_an_interruption_loses_everything() -> None:
    memory = placed(PlacementMemory(progress_seconds=100), SPOT_PLACEMENT, T0)
    after = interrupted(memory, job(checkpoint_interval_seconds=None), T0 + 9 * HOUR)
    assert after.progress_seconds == 100
    after = interrupted(memory, job(checkpoint_interval_seconds=0), T0 + 9 * HOUR)
    assert after.progress_seconds == 100


def test_the_restart_after_an_interruption_does_no_work() -> None:
    memory = interrupted(placed(PlacementMemory(), SPOT_PLACEMENT, T0), job(), T0 + 1800)
    assert memory.progress_seconds == 1800
    # Restart of 300 s, then 1800 s of work: exactly one more checkpoint.
    assert interrupted(memory, job(), T0 + 1800 + 2099).progress_seconds == 1800
    assert interrupted(memory, job(), T0 + 1800 + 2100).progress_seconds == 3600


def test_falling_back_keeps_checkpoints_and_leaves_spot_for_good() -> None:
    memory = placed(PlacementMemory(pending_since=None), SPOT_PLACEMENT, T0)
    after = fell_back(memory, T0 + 4000, job())
    assert after.on_demand_only and after.placed_at is None
    assert after.progress_seconds == 3600
    assert after.pool == "l4-spot", "where it came from stays known"
    assert fell_back(memory, T0 + 4000).progress_seconds == 0, "no job: nothing credited"


def test_unavailable_pools_are_remembered_and_stale_ones_dropped() -> None:
    memory = pool_unavailable(PlacementMemory(), "a", T0)
    memory = pool_unavailable(memory, "b", T0 + 100)
    assert memory.unavailable_pools == {"a": T0, "b": T0 + 100}
    memory = pool_unavailable(memory, "c", T0 + UNAVAILABLE_MEMORY_SECONDS)
    assert memory.unavailable_pools == {"b": T0 + 100, "c": T0 + UNAVAILABLE_MEMORY_SECONDS}


def test_the_pending_clock_starts_once_and_stops() -> None:
    memory = pending(PlacementMemory(), T0, unschedulable=True)
    assert memory.pending_since == T0
    assert pending(memory, T0 + 60, unschedulable=True).pending_since == T0
    assert pending(memory, T0 + 60, unschedulable=False).pending_since is None


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0, 1e6),
    st.none() | st.integers(1, 7200),
    st.integers(0, 10 * 86400),
    st.integers(0, 4),
    st.integers(0, 1800),
)
def test_interruption_bookkeeping_keeps_checkpointed_work_only(
    progress: float, interval: int | None, run: int, interruptions: int, restart: int
) -> None:
    """Whole seconds, as the API has them, keep the floor exact."""
    j = job(checkpoint_interval_seconds=interval, restart_overhead_seconds=restart)
    memory = PlacementMemory(
        pool="l4-spot", placed_at=T0, attempts=1, interruptions=interruptions,
        progress_seconds=progress,
    )  # fmt: skip
    after = interrupted(memory, j, T0 + run)
    gained = after.progress_seconds - progress
    worked = max(0.0, run - (restart if interruptions else 0.0))
    assert after.interruptions == interruptions + 1
    assert 0 <= gained <= worked + 1e-6
    if interval is None:
        assert gained == 0
    else:
        assert gained == pytest.approx(math.floor(worked / interval) * interval, abs=1e-6)
        assert worked - gained < interval


# --- start windows ------------------------------------------------------------------

NIGHTLY_BERLIN = StartWindow(cron="0 22 * * *", duration_seconds=4 * 3600, timezone="Europe/Berlin")


def test_next_window_start_follows_the_time_zone() -> None:
    # 12:00 UTC is 13:00 in Berlin (CET): the next 22:00 Berlin is 21:00 UTC.
    assert not window_open_now([NIGHTLY_BERLIN], T0)
    assert next_window_start([NIGHTLY_BERLIN], T0) == T0 + 9 * HOUR
    assert window_open_now([NIGHTLY_BERLIN], T0 + 9 * HOUR)
    assert next_window_start([NIGHTLY_BERLIN], T0 + 10 * HOUR) == T0 + 10 * HOUR


def test_the_earliest_of_several_windows_wins_and_no_windows_never_wait() -> None:
    morning = StartWindow(cron="0 14 * * *", duration_seconds=600)
    assert next_window_start([NIGHTLY_BERLIN, morning], T0) == T0 + 2 * HOUR
    assert next_window_start([], T0) is None
    assert window_open_now([], T0)
