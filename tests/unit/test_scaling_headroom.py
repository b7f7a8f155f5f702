"""Calibrated headroom: scored only from the past, never below 1, monotone in coverage."""

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.inference import Inference
from gpufinops.core.scaling.decide import ScalingSettings, ScalingState, Tick, decide
from gpufinops.core.scaling.headroom import (
    BINS,
    GROWTH,
    MIN_WEIGHT,
    Calibration,
    bin_of,
    margin,
    observe,
)
from gpufinops.core.scaling.observation import Observation

SYNC = 15.0
LEAD = 180.0

moments = st.tuples(
    st.none() | st.floats(min_value=0, max_value=1e4, allow_nan=False),  # demand
    st.none() | st.floats(min_value=0, max_value=1e4, allow_nan=False),  # ready capacity
    st.floats(min_value=0.5, max_value=3.0, allow_nan=False),  # headroom in use
    st.floats(min_value=0, max_value=1e4, allow_nan=False),  # backlog rate
)


def feed(steps: list[tuple[float | None, float | None, float, float]], start: float = 0.0):
    """The calibration after each tick, one tick per sync period."""
    cal = Calibration()
    out = []
    for i, (demand, ready, headroom, backlog) in enumerate(steps):
        cal = observe(cal, start + i * SYNC, demand, ready, headroom, LEAD, backlog=backlog)
        out.append(cal)
    return out


def steady(need: float, ticks: int, demand: float = 10.0, headroom: float = 1.0) -> Calibration:
    """Ticks whose ready capacity, bought with ``headroom``, needed ``need``."""
    cal = Calibration()
    for i in range(ticks):
        cal = observe(cal, i * SYNC, demand, demand * headroom / need, headroom, LEAD)
    return cal


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(moments, min_size=1, max_size=80), coverage=st.floats(0.01, 0.999))
def test_margin_is_never_below_one_and_weights_never_negative(steps, coverage) -> None:
    for cal in feed(steps):
        assert all(c >= 0 for c in cal.counts)
        assert cal.scored >= 0
        m = margin(cal, coverage, min_weight=1)
        assert m is None or 1.0 <= m <= GROWTH**BINS + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(moments, min_size=1, max_size=80),
    low=st.floats(0.01, 0.999),
    high=st.floats(0.01, 0.999),
)
def test_margin_is_monotone_in_the_coverage_target(steps, low, high) -> None:
    low, high = min(low, high), max(low, high)
    cal = feed(steps)[-1]
    a, b = margin(cal, low, min_weight=1), margin(cal, high, min_weight=1)
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert a <= b


@settings(max_examples=60, deadline=None)
@given(
    past=st.lists(moments, min_size=1, max_size=40),
    future=st.lists(moments, min_size=1, max_size=40),
    other=st.lists(moments, min_size=1, max_size=40),
)
def test_the_calibration_at_a_tick_depends_on_no_later_tick(past, future, other) -> None:
    assert feed(past + future)[len(past) - 1] == feed(past + other)[len(past) - 1]


def test_a_moment_is_scored_only_once_a_plan_is_one_lead_old() -> None:
    ticks_before_first_score = int(LEAD / SYNC)
    cals = feed([(10.0, 5.0, 1.0, 0.0)] * (ticks_before_first_score + 2))
    assert all(c.scored == 0 for c in cals[:ticks_before_first_score])
    assert cals[ticks_before_first_score].scored == 1
    # Pending plans never outlive their lead: the state stays small.
    assert all(len(c.pending) <= ticks_before_first_score + 1 for c in cals)


def test_the_score_is_demand_over_ready_capacity_times_the_headroom_in_use() -> None:
    # Capacity bought with a 1.1 headroom fell short by 1.5x: 1.65 would have been needed.
    cal = steady(1.5 * 1.1, 2000, headroom=1.1)
    m = margin(cal)
    assert m is not None
    assert 1.65 <= m < 1.65 * GROWTH + 1e-9
    # A moment covered with room to spare needs nothing.
    assert margin(steady(0.5, 2000)) == 1.0


def test_the_excess_queue_counts_as_demand_until_it_drains() -> None:
    cal = Calibration()
    for i in range(2000):
        cal = observe(cal, i * SYNC, 10.0, 10.0, 1.0, LEAD, backlog=5.0)
    m = margin(cal)
    assert m is not None and 1.5 <= m < 1.5 * GROWTH + 1e-9


def test_no_margin_before_enough_moments_are_scored() -> None:
    assert margin(Calibration()) is None
    few = steady(1.4, int(MIN_WEIGHT / 2))
    assert margin(few) is None
    assert margin(few, min_weight=1) is not None


def test_busy_moments_weigh_more_than_quiet_ones() -> None:
    cal = Calibration()
    for i in range(4000):
        short = i % 10 == 0  # a tenth of the moments fall short, and they carry most demand
        demand = 100.0 if short else 1.0
        cal = observe(cal, i * SYNC, demand, demand / (1.3 if short else 0.5), 1.0, LEAD)
    assert cal.scored == pytest.approx(
        sum(math.exp(-(4000 - 1 - i) * SYNC / 172800.0) for i in range(12, 4000)), rel=1e-6
    )
    m = margin(cal, 0.5)
    assert m is not None and m >= 1.3


def test_old_scores_fade_over_days() -> None:
    burst = steady(1.6, 3000)
    assert (margin(burst) or 0) >= 1.6
    cal = burst
    start = 3000 * SYNC
    for i in range(int(8 * 86400 / SYNC)):  # four time constants
        cal = observe(cal, start + i * SYNC, 10.0, 20.0, 1.0, LEAD)
    assert margin(cal) == 1.0


def test_a_clock_that_goes_back_drops_the_pending_plans() -> None:
    cal = feed([(10.0, 5.0, 1.0, 0.0)] * 5, start=1000.0)[-1]
    back = observe(cal, 0.0, 10.0, 5.0, 1.0, LEAD)
    assert [p.time for p in back.pending] == [0.0]
    assert back.scored == 0


def test_bins_cover_every_need() -> None:
    assert bin_of(0.0) == bin_of(1.0) == 0
    assert bin_of(1.0001) == 1
    assert bin_of(GROWTH) == 1
    assert bin_of(1e9) == BINS
    with pytest.raises(ValueError, match="coverage"):
        margin(Calibration(), 1.0)


# --- in the decision ------------------------------------------------------------------


def make(**inference: object) -> ScalingSettings:
    spec = {"targetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 200, **inference}
    return ScalingSettings.from_spec(Inference.model_validate(spec))


def observation(demand: float, queue: float = 0.0) -> Observation:
    return Observation(queue_depth=queue, running=0, arrival_rate=demand, throughput=demand)


def test_a_calibrated_need_above_the_fixed_headroom_raises_the_plan() -> None:
    s = replace(make(), capacity_per_replica=None)
    state = ScalingState(capacity_per_replica=1.0, headroom=steady(1.5, 2000))
    tick = Tick(1e6, 10, 10, observation(20.0))
    calibrated = decide(s, state, tick)
    fixed = decide(replace(s, coverage=None), state, tick)
    assert fixed.reactive == math.ceil(20.0 / 0.9)
    assert calibrated.reactive is not None and calibrated.reactive >= 30  # 20 x 1.5
    assert "calibrated" in calibrated.reason
    # The forecast peak is planned with the same headroom.
    peak = decide(s, state, replace(tick, forecast_peak=40.0))
    assert peak.predictive is not None and peak.predictive >= 60


def test_a_calibrated_need_below_the_fixed_headroom_changes_nothing() -> None:
    s = make()
    state = ScalingState(capacity_per_replica=1.0, headroom=steady(1.05, 2000))
    tick = Tick(1e6, 10, 10, observation(20.0), forecast_peak=25.0)
    calibrated = decide(s, state, tick)
    fixed = decide(replace(s, coverage=None), state, tick)
    assert (calibrated.desired, calibrated.reactive, calibrated.predictive) == (
        fixed.desired,
        fixed.reactive,
        fixed.predictive,
    )


def test_decide_scores_its_own_ticks() -> None:
    s = make()
    state = ScalingState(capacity_per_replica=1.0)
    current = 25
    for i in range(40):
        d = decide(s, state, Tick(1e6 + i * SYNC, current, current, observation(20.0)))
        state, current = d.state, d.desired
    assert state.headroom.scored == pytest.approx(40 - int(LEAD / SYNC), rel=0.01)  # decayed
    off = decide(replace(s, coverage=None), ScalingState(), Tick(1e6, 5, 5, observation(20.0)))
    assert off.state.headroom == Calibration()


def test_a_tick_short_of_preempted_replicas_is_not_scored() -> None:
    # Spot replicas preempted and being replaced: the gap is the spot layer's to cover
    # (over-provisioning, stand-ins), not headroom the whole service should buy.
    s = make()
    scored = ScalingState(capacity_per_replica=1.0)
    skipped = ScalingState(capacity_per_replica=1.0)
    for i in range(40):
        now = 1e6 + i * SYNC
        short = 10 if 20 <= i < 30 else 25  # ten replicas lost for ten ticks
        scored = decide(s, scored, Tick(now, 25, short, observation(20.0))).state
        skipped = decide(
            s, skipped, Tick(now, 25, short, observation(20.0), disrupted=20 <= i < 30)
        ).state
    assert skipped.headroom.scored == pytest.approx(scored.headroom.scored - 10, rel=0.01)
    starved = sum(skipped.headroom.counts[1:])  # moments whose ready capacity fell short
    assert starved < sum(scored.headroom.counts[1:])
