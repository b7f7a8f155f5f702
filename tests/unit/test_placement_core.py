"""The training placement core: pool choice, expected run time and cost, start windows."""

import math
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpufinops.api.training import Spot, StartWindow
from gpufinops.config.model import CapacityType
from gpufinops.core.placement.choose import (
    choose_pool,
    expected_cost_usd,
    expected_run_seconds,
    gpus_per_pod,
    nodes_needed,
)
from gpufinops.core.placement.model import (
    UNAVAILABLE_MEMORY_SECONDS,
    JobProfile,
    PlacementMemory,
    PoolOffer,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()  # a Monday, 12:00 UTC
HOUR = 3600.0

A100_OD = PoolOffer(
    name="a100-on-demand",
    capacity_type=CapacityType.ON_DEMAND,
    gpus_per_node=8,
    gpu_hourly_price_usd=2.74,
)
L4_SPOT = PoolOffer(
    name="l4-spot",
    capacity_type=CapacityType.SPOT,
    gpus_per_node=4,
    gpu_hourly_price_usd=0.48,
    interruptions_per_hour=0.01,
)
L4_OD = PoolOffer(
    name="l4-on-demand",
    capacity_type=CapacityType.ON_DEMAND,
    gpus_per_node=4,
    gpu_hourly_price_usd=1.15,
)
OFFERS = (A100_OD, L4_SPOT, L4_OD)


def job(**fields: object) -> JobProfile:
    base: dict[str, object] = {
        "gpus": 1.0,
        "expected_duration_seconds": 10 * HOUR,
        "checkpoint_interval_seconds": 1800.0,
        "submitted_at": T0,
    }
    return JobProfile.model_validate(base | fields)


NIGHTLY = StartWindow(cron="0 22 * * *", duration_seconds=6 * 3600)


# --- expected run time and cost -----------------------------------------------------


def test_without_interruptions_the_run_takes_exactly_the_work() -> None:
    assert expected_run_seconds(job(), L4_OD, 5 * HOUR) == 5 * HOUR
    assert expected_run_seconds(job(), L4_SPOT, 0.0) == 0.0


def test_small_rates_match_the_first_order_formula() -> None:
    """Interruptions x (restart + half a checkpoint interval), to first order."""
    offer = L4_SPOT.model_copy(update={"interruptions_per_hour": 0.001})
    j = job(restart_overhead_seconds=300.0)
    work = 10 * HOUR
    first_order = work + 0.001 * 10 * (300.0 + 1800.0 / 2)
    assert expected_run_seconds(j, offer, work) == pytest.approx(first_order, rel=1e-4)


def test_without_checkpoints_an_interruption_restarts_from_zero() -> None:
    offer = L4_SPOT.model_copy(update={"interruptions_per_hour": 0.05})
    with_ckpt = expected_run_seconds(job(), offer, 20 * HOUR)
    without = expected_run_seconds(job(checkpoint_interval_seconds=None), offer, 20 * HOUR)
    rate = 0.05 / HOUR
    exact = math.expm1(rate * 20 * HOUR) * (1 / rate + 300.0)
    assert without == pytest.approx(exact)
    assert without > with_ckpt > 20 * HOUR


def test_more_nodes_mean_more_interruptions() -> None:
    small = job(gpus=2.0, pods=1)
    wide = job(gpus=8.0, pods=4)  # 2 GPUs per pod, 2 pods per 4-GPU node
    assert gpus_per_pod(wide) == 2
    assert nodes_needed(small, L4_SPOT) == 1
    assert nodes_needed(wide, L4_SPOT) == 2
    extra_small = expected_run_seconds(small, L4_SPOT, HOUR) - HOUR
    extra_wide = expected_run_seconds(wide, L4_SPOT, HOUR) - HOUR
    assert extra_wide == pytest.approx(2 * extra_small, rel=1e-2)  # second order differs


def test_fractional_gpus_round_up_to_fit_but_bill_by_fraction() -> None:
    shared = job(gpus=0.5)
    assert gpus_per_pod(shared) == 1
    assert expected_cost_usd(shared, L4_OD, 2 * HOUR) == pytest.approx(0.5 * 1.15 * 2)


def test_cost_is_price_times_gpus_times_expected_hours() -> None:
    j = job(gpus=4.0)
    run = expected_run_seconds(j, L4_SPOT, 10 * HOUR)
    assert expected_cost_usd(j, L4_SPOT, 10 * HOUR) == pytest.approx(0.48 * 4 * run / HOUR)


# --- choosing a pool ----------------------------------------------------------------


def test_the_cheapest_pool_is_spot_with_a_comparison_in_the_reason() -> None:
    p = choose_pool(job(), OFFERS, Spot(), PlacementMemory(), T0)
    assert p.pool == "l4-spot"
    assert p.capacity_type == CapacityType.SPOT
    assert p.start_at is None
    assert p.on_demand_cost_usd == pytest.approx(1.15 * 10)
    assert p.expected_cost_usd is not None and p.expected_cost_usd < p.on_demand_cost_usd
    assert p.reason.startswith("l4-spot: spot $0.48/GPU-h, expected $")
    assert "on l4-on-demand" in p.reason


def test_a_pod_larger_than_a_node_skips_the_pool() -> None:
    p = choose_pool(job(gpus=8.0), OFFERS, Spot(), PlacementMemory(), T0)
    assert p.pool == "a100-on-demand"
    assert "l4-spot (needs 8 GPUs per pod, nodes have 4)" in p.reason


def test_a_recently_unavailable_pool_is_skipped_for_three_minutes() -> None:
    failed = PlacementMemory(unavailable_pools={"l4-spot": T0})
    soon = choose_pool(job(), OFFERS, Spot(), failed, T0 + UNAVAILABLE_MEMORY_SECONDS - 1)
    assert soon.pool == "l4-on-demand"
    assert "l4-spot (had no capacity 179 s ago)" in soon.reason
    later = choose_pool(job(), OFFERS, Spot(), failed, T0 + UNAVAILABLE_MEMORY_SECONDS)
    assert later.pool == "l4-spot"


@pytest.mark.parametrize(
    ("spot", "memory", "why"),
    [
        (Spot(enabled=False), PlacementMemory(), "spot is disabled"),
        (Spot(), PlacementMemory(on_demand_only=True), "fell back to on-demand"),
        (Spot(max_interruptions=2), PlacementMemory(interruptions=2), "limit of 2"),
    ],
)
def test_spot_is_not_used_when_the_job_must_not_use_it(
    spot: Spot, memory: PlacementMemory, why: str
) -> None:
    p = choose_pool(job(), OFFERS, spot, memory, T0)
    assert p.pool == "l4-on-demand"
    assert why in p.reason


def test_a_deadline_spot_cannot_meet_moves_the_job_to_on_demand() -> None:
    # 10 h of work, no checkpoints: spot expects more than 10 h; on-demand exactly 10 h.
    j = job(checkpoint_interval_seconds=None, deadline=T0 + 10 * HOUR + 60)
    assert expected_run_seconds(j, L4_SPOT, 10 * HOUR) > 10 * HOUR + 60
    p = choose_pool(j, OFFERS, Spot(), PlacementMemory(), T0)
    assert p.pool == "l4-on-demand"
    assert "after the deadline" in p.reason


def test_without_an_on_demand_pool_a_late_job_still_runs_on_spot() -> None:
    j = job(checkpoint_interval_seconds=None, deadline=T0 + 10 * HOUR)
    p = choose_pool(j, [L4_SPOT], Spot(), PlacementMemory(), T0)
    assert p.pool == "l4-spot"
    assert "despite the risk" in p.reason
    assert p.on_demand_cost_usd is None


def test_a_replacement_pays_the_restart_again() -> None:
    first = choose_pool(job(), [L4_OD], Spot(), PlacementMemory(), T0)
    again = choose_pool(job(), [L4_OD], Spot(), PlacementMemory(attempts=1), T0)
    assert first.expected_cost_usd == pytest.approx(1.15 * 10)
    assert again.expected_cost_usd == pytest.approx(1.15 * (10 + 300 / HOUR))


def test_saved_progress_shortens_the_work_left() -> None:
    memory = PlacementMemory(progress_seconds=6 * HOUR, attempts=1)
    p = choose_pool(job(), [L4_OD], Spot(), memory, T0)
    assert p.expected_cost_usd == pytest.approx(1.15 * (4 + 300 / HOUR))


def test_ties_go_to_the_first_pool_in_spec_order() -> None:
    twin = L4_OD.model_copy(update={"name": "l4-twin"})
    assert choose_pool(job(), [L4_OD, twin], Spot(), PlacementMemory(), T0).pool == "l4-on-demand"
    assert choose_pool(job(), [twin, L4_OD], Spot(), PlacementMemory(), T0).pool == "l4-twin"


def test_unknown_duration_ranks_by_hourly_price_and_interruption_overhead() -> None:
    j = job(expected_duration_seconds=None)
    p = choose_pool(j, OFFERS, Spot(), PlacementMemory(), T0)
    assert p.pool == "l4-spot"
    assert p.expected_cost_usd is None and p.on_demand_cost_usd is None
    assert "duration unknown" in p.reason
    # So frequent that a job without checkpoints rarely finishes an hour: on-demand wins.
    stormy = L4_SPOT.model_copy(update={"interruptions_per_hour": 5.0})
    j = job(expected_duration_seconds=None, checkpoint_interval_seconds=None)
    assert choose_pool(j, [stormy, L4_OD], Spot(), PlacementMemory(), T0).pool == "l4-on-demand"


def test_no_eligible_pool_says_which_were_skipped_and_why() -> None:
    p = choose_pool(job(gpus=16.0), OFFERS, Spot(), PlacementMemory(), T0)
    assert p.pool is None
    assert p.capacity_type is None
    for offer in OFFERS:
        assert f"{offer.name} (needs 16 GPUs per pod, nodes have {offer.gpus_per_node})" in (
            p.reason
        )
    assert (
        "no node pools are allowed" in choose_pool(job(), [], Spot(), PlacementMemory(), T0).reason
    )


# --- start windows --------------------------------------------------------------------


def test_a_closed_start_window_delays_the_start_to_the_next_one() -> None:
    j = job(start_windows=(NIGHTLY,), deadline=T0 + 3 * 86400)
    p = choose_pool(j, OFFERS, Spot(), PlacementMemory(), T0)  # 12:00, window 22:00-04:00
    assert p.pool == "l4-spot"
    assert p.start_at == T0 + 10 * HOUR
    assert "waiting for the start window" in p.reason


def test_an_open_start_window_starts_now() -> None:
    j = job(start_windows=(NIGHTLY,))
    p = choose_pool(j, OFFERS, Spot(), PlacementMemory(), T0 + 11 * HOUR)  # 23:00
    assert p.pool == "l4-spot"
    assert p.start_at is None


def test_a_deadline_that_needs_an_earlier_start_overrides_the_window() -> None:
    # 10 h of work due at 23:00 today: waiting for 22:00 would finish at 08:00 tomorrow.
    j = job(start_windows=(NIGHTLY,), deadline=T0 + 11 * HOUR)
    p = choose_pool(j, OFFERS, Spot(), PlacementMemory(), T0)
    assert p.start_at is None
    assert "would miss the deadline" in p.reason


# --- properties -----------------------------------------------------------------------

names = st.sampled_from(["p0", "p1", "p2", "p3", "p4", "p5"])
offer_st = st.builds(
    PoolOffer,
    name=names,
    capacity_type=st.sampled_from(list(CapacityType)),
    gpus_per_node=st.sampled_from([1, 2, 4, 8]),
    gpu_hourly_price_usd=st.floats(0, 10),
    interruptions_per_hour=st.floats(0, 2),
)
offers_st = st.lists(offer_st, max_size=6, unique_by=lambda o: o.name)
job_st = st.builds(
    JobProfile,
    gpus=st.floats(0, 32),
    pods=st.integers(1, 8),
    expected_duration_seconds=st.none() | st.floats(1, 30 * 86400),
    checkpoint_interval_seconds=st.none() | st.floats(0, 7200),
    restart_overhead_seconds=st.floats(0, 1800),
    deadline=st.none() | st.floats(T0, T0 + 60 * 86400),
    submitted_at=st.just(T0),
)
memory_st = st.builds(
    PlacementMemory,
    interruptions=st.integers(0, 5),
    attempts=st.integers(0, 5),
    unavailable_pools=st.dictionaries(names, st.floats(T0 - 600, T0)),
    on_demand_only=st.booleans(),
    progress_seconds=st.floats(0, 86400),
)
spot_st = st.builds(
    Spot,
    enabled=st.booleans(),
    max_interruptions=st.integers(0, 6),
    fallback_to_on_demand=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(job_st, offers_st, spot_st, memory_st)
def test_placement_respects_every_exclusion(
    j: JobProfile, offers: list[PoolOffer], spot: Spot, memory: PlacementMemory
) -> None:
    p = choose_pool(j, offers, spot, memory, T0)
    by_name = {o.name: o for o in offers}
    if p.pool is None:
        assert p.reason
        return
    assert p.pool in by_name, "never a pool the workload does not allow"
    chosen = by_name[p.pool]
    assert p.capacity_type == chosen.capacity_type
    assert gpus_per_pod(j) <= chosen.gpus_per_node, "the pod fits a node"
    failed = memory.unavailable_pools.get(p.pool)
    assert failed is None or T0 - failed >= UNAVAILABLE_MEMORY_SECONDS
    if chosen.spot:
        assert spot.enabled and not memory.on_demand_only
        assert memory.interruptions < spot.max_interruptions


@settings(max_examples=300, deadline=None)
@given(
    job_st,
    offers_st,
    memory_st,
    st.floats(0.5, 3.0),
    st.floats(60, 10 * 86400),
    st.sampled_from([1, 2, 4, 8]),
)
def test_a_deadline_spot_cannot_meet_always_lands_on_on_demand(
    j: JobProfile,
    offers: list[PoolOffer],
    memory: PlacementMemory,
    slack: float,
    duration: float,
    per_pod: int,
) -> None:
    # Deadlines near the expected run, so both sides of the boundary are common.
    j = j.model_copy(
        update={
            "gpus": float(per_pod * j.pods),
            "expected_duration_seconds": duration,
            "deadline": T0 + slack * duration,
        }
    )
    assert j.deadline is not None
    memory = memory.model_copy(update={"unavailable_pools": {}, "on_demand_only": False})
    backstop = A100_OD.model_copy(update={"name": "backstop", "gpu_hourly_price_usd": 50.0})
    offers = [*offers, backstop]  # an on-demand pool the pod always fits
    p = choose_pool(j, offers, Spot(max_interruptions=100), memory, T0)
    chosen = next(o for o in offers if o.name == p.pool)
    left = max(0.0, duration - memory.progress_seconds)
    startup = j.restart_overhead_seconds if memory.attempts else 0.0

    def run(o: PoolOffer) -> float:
        return startup + expected_run_seconds(j, o, left)

    if chosen.spot:
        assert T0 + run(chosen) <= j.deadline
    # And it is the cheapest pool that can take the job in time on spot.
    eligible = [
        o
        for o in offers
        if gpus_per_pod(j) <= o.gpus_per_node and (not o.spot or T0 + run(o) <= j.deadline)
    ]
    costs = [o.gpu_hourly_price_usd * j.gpus * run(o) / HOUR for o in eligible]
    finite = [c for c in costs if math.isfinite(c)]
    if finite:
        assert p.expected_cost_usd == pytest.approx(min(finite))
    else:  # interruptions outpace the work everywhere: the cost is unknown, not NaN
        assert p.expected_cost_usd is None


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0, 23.99),
    st.floats(1, 72),
    st.floats(0.1, 8),
)
def test_start_windows_delay_unless_the_deadline_needs_earlier(
    hour: float, slack_hours: float, work_hours: float
) -> None:
    now = T0 - 12 * HOUR + hour * HOUR  # some time on the day of T0
    j = job(
        start_windows=(NIGHTLY,),
        expected_duration_seconds=work_hours * HOUR,
        deadline=now + slack_hours * HOUR,
    )
    p = choose_pool(j, [L4_OD], Spot(), PlacementMemory(), now)
    local_hour = datetime.fromtimestamp(now, tz=UTC).hour
    is_open = local_hour >= 22 or local_hour < 4
    if is_open:
        assert p.start_at is None
        return
    next_start = datetime.fromtimestamp(now, tz=UTC).replace(
        hour=22, minute=0, second=0, microsecond=0
    )
    nxt = next_start.timestamp()
    assert j.deadline is not None
    if nxt + work_hours * HOUR <= j.deadline:
        assert p.start_at == nxt
    else:
        assert p.start_at is None
        assert "would miss the deadline" in p.reason


@settings(max_examples=200, deadline=None)
@given(job_st, st.floats(0, 1), st.floats(0, 1), st.floats(0, 10 * 86400))
def test_expected_run_grows_with_the_interruption_rate(
    j: JobProfile, low: float, extra: float, work: float
) -> None:
    calm = L4_SPOT.model_copy(update={"interruptions_per_hour": low})
    rough = L4_SPOT.model_copy(update={"interruptions_per_hour": low + extra})
    assume(gpus_per_pod(j) <= 4)
    calm_run = expected_run_seconds(j, calm, work)
    assert calm_run >= work * (1 - 1e-12)
    assert expected_run_seconds(j, rough, work) >= calm_run * (1 - 1e-12)
