"""Fallback to on-demand: each trigger fires exactly at its threshold, and only on spot."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.training import Spot
from gpufinops.config.model import CapacityType
from gpufinops.core.placement.choose import expected_run_seconds
from gpufinops.core.placement.fallback import fallback_verdict, remaining_seconds
from gpufinops.core.placement.interruptions import INTERRUPTION_TAINTS, interruption_reason
from gpufinops.core.placement.model import JobProfile, PlacementMemory, PoolOffer

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0

CALM_SPOT = PoolOffer(
    name="l4-spot",
    capacity_type=CapacityType.SPOT,
    gpus_per_node=4,
    gpu_hourly_price_usd=0.48,
    interruptions_per_hour=0.0,  # expected run == work, so deadlines are exact
)
SPOT = CALM_SPOT.model_copy(update={"interruptions_per_hour": 0.02})
ON_DEMAND = PoolOffer(
    name="l4-on-demand",
    capacity_type=CapacityType.ON_DEMAND,
    gpus_per_node=4,
    gpu_hourly_price_usd=1.15,
)


def job(**fields: object) -> JobProfile:
    base: dict[str, object] = {
        "gpus": 1.0,
        "expected_duration_seconds": 10 * HOUR,
        "checkpoint_interval_seconds": 1800.0,
        "submitted_at": T0,
    }
    return JobProfile.model_validate(base | fields)


def on(offer: PoolOffer, **fields: object) -> PlacementMemory:
    base: dict[str, object] = {
        "pool": offer.name,
        "capacity_type": offer.capacity_type,
        "placed_at": T0,
        "attempts": 1,
    }
    return PlacementMemory.model_validate(base | fields)


# --- remaining work -----------------------------------------------------------------


def test_remaining_work_subtracts_saved_progress_and_the_current_run() -> None:
    memory = on(SPOT, progress_seconds=2 * HOUR)
    assert remaining_seconds(job(), memory, T0 + HOUR) == pytest.approx(7 * HOUR)
    assert remaining_seconds(job(expected_duration_seconds=None), memory, T0) is None
    assert remaining_seconds(job(), memory, T0 + 20 * HOUR) == 0.0


def test_a_restarted_run_does_no_work_during_its_restart() -> None:
    memory = on(SPOT, interruptions=1, progress_seconds=HOUR)
    j = job(restart_overhead_seconds=300.0)
    assert remaining_seconds(j, memory, T0 + 200) == pytest.approx(9 * HOUR)
    assert remaining_seconds(j, memory, T0 + 900) == pytest.approx(9 * HOUR - 600)
    # The restart still ahead delays the expected finish too.
    verdict = fallback_verdict(j, Spot(), memory, CALM_SPOT, T0 + 200, pending=False)
    assert verdict.expected_finish == pytest.approx(T0 + 300 + 9 * HOUR)


# --- thresholds (one below: no; at: yes) ----------------------------------------------


@pytest.mark.parametrize("timeout", [0, 1, 600, 3600])
def test_pending_timeout_fires_exactly_at_the_timeout(timeout: int) -> None:
    spot = Spot(pending_timeout_seconds=timeout)
    memory = on(SPOT, pending_since=T0)
    if timeout > 0:
        below = fallback_verdict(job(), spot, memory, SPOT, T0 + timeout - 1, pending=True)
        assert not below.fall_back and below.trigger is None
    at = fallback_verdict(job(), spot, memory, SPOT, T0 + timeout, pending=True)
    assert at.fall_back and at.trigger == "PendingTimeout"
    assert f"(limit {timeout} s)" in at.message


def test_pending_only_counts_while_pods_are_unschedulable() -> None:
    memory = on(SPOT, pending_since=T0)
    verdict = fallback_verdict(job(), Spot(), memory, SPOT, T0 + 10 * HOUR, pending=False)
    assert verdict.trigger is None


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_max_interruptions_fires_exactly_at_the_limit(limit: int) -> None:
    spot = Spot(max_interruptions=limit)
    below = fallback_verdict(
        job(), spot, on(SPOT, interruptions=limit - 1), SPOT, T0, pending=False
    )
    assert not below.fall_back and below.trigger is None
    at = fallback_verdict(job(), spot, on(SPOT, interruptions=limit), SPOT, T0, pending=False)
    assert at.fall_back and at.trigger == "MaxInterruptions"
    assert f"{limit} spot interruptions on l4-spot (limit {limit})" in at.message


def test_deadline_at_risk_fires_when_the_expected_finish_passes_the_deadline() -> None:
    finish = T0 + 10 * HOUR  # 10 h of work placed at T0 on a pool without interruptions
    met = fallback_verdict(
        job(deadline=finish), Spot(), on(CALM_SPOT), CALM_SPOT, T0, pending=False
    )
    assert not met.fall_back and not met.deadline_at_risk
    assert met.expected_finish == pytest.approx(finish)
    late = fallback_verdict(
        job(deadline=finish - 1), Spot(), on(CALM_SPOT), CALM_SPOT, T0, pending=False
    )
    assert late.fall_back and late.trigger == "DeadlineAtRisk" and late.deadline_at_risk
    assert "after the deadline" in late.message


def test_the_deadline_estimate_includes_expected_interruptions() -> None:
    j = job(deadline=T0 + 10 * HOUR + 60)
    expected = T0 + expected_run_seconds(j, SPOT, 10 * HOUR)
    verdict = fallback_verdict(j, Spot(), on(SPOT), SPOT, T0, pending=False)
    assert verdict.expected_finish == pytest.approx(expected)
    assert verdict.trigger == "DeadlineAtRisk"


def test_without_permission_to_fall_back_a_trigger_is_only_reported() -> None:
    spot = Spot(max_interruptions=1, fallback_to_on_demand=False)
    verdict = fallback_verdict(job(), spot, on(SPOT, interruptions=1), SPOT, T0, pending=False)
    assert not verdict.fall_back
    assert verdict.report_only and verdict.trigger == "MaxInterruptions"
    assert "fallbackToOnDemand is false" in verdict.message


def test_on_demand_never_falls_back_but_reports_deadline_risk() -> None:
    memory = on(ON_DEMAND, interruptions=9, pending_since=T0)
    j = job(deadline=T0 + HOUR)
    verdict = fallback_verdict(
        j, Spot(max_interruptions=1), memory, ON_DEMAND, T0 + HOUR, pending=True
    )
    assert not verdict.fall_back and verdict.trigger is None and not verdict.report_only
    assert verdict.deadline_at_risk
    assert verdict.expected_finish == pytest.approx(T0 + 10 * HOUR)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 86400), st.integers(0, 2 * 86400), st.booleans())
def test_pending_timeout_is_inclusive(timeout: int, waited: int, allowed: bool) -> None:
    spot = Spot(pending_timeout_seconds=timeout, max_interruptions=1000,
                fallback_to_on_demand=allowed)  # fmt: skip
    memory = on(SPOT, pending_since=T0)
    verdict = fallback_verdict(job(), spot, memory, SPOT, T0 + waited, pending=True)
    fired = waited >= timeout
    assert (verdict.trigger == "PendingTimeout") == fired
    assert verdict.fall_back == (fired and allowed)
    assert verdict.report_only == (fired and not allowed)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 50), st.integers(0, 60))
def test_max_interruptions_is_inclusive(limit: int, seen: int) -> None:
    spot = Spot(max_interruptions=limit)
    verdict = fallback_verdict(job(), spot, on(SPOT, interruptions=seen), SPOT, T0, pending=False)
    assert (verdict.trigger == "MaxInterruptions") == (seen >= limit)
    assert verdict.fall_back == (seen >= limit)


@settings(max_examples=300, deadline=None)
@given(st.integers(60, 30 * 86400), st.integers(-86400, 86400), st.integers(0, 30 * 86400))
def test_deadline_at_risk_matches_the_expected_run(work: int, margin: int, elapsed: int) -> None:
    """Whole seconds keep epoch arithmetic exact, so a zero margin is exactly on time."""
    j = job(expected_duration_seconds=work, checkpoint_interval_seconds=None)
    now = T0 + elapsed
    left = max(0.0, work - elapsed)
    finish = now + expected_run_seconds(j, SPOT, left)
    j = j.model_copy(update={"deadline": finish + margin})
    verdict = fallback_verdict(j, Spot(max_interruptions=1000), on(SPOT), SPOT, now, pending=False)
    assert verdict.deadline_at_risk == (margin < 0)
    assert (verdict.trigger == "DeadlineAtRisk") == (margin < 0)


# --- interruption taints ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("aws-node-termination-handler/spot-itn", "SpotInterruptionNotice"),
        ("aws-node-termination-handler/rebalance-recommendation", "RebalanceRecommendation"),
        ("karpenter.sh/disrupted", "KarpenterDisruption"),
        ("karpenter.sh/disruption", "KarpenterDisruption"),
        ("cloud.google.com/impending-node-termination", "ImpendingNodeTermination"),
        ("gpufinops.dev/spot-interruption", "SpotInterruption"),
    ],
)
def test_interruption_taints_are_recognised(key: str, reason: str) -> None:
    assert interruption_reason(["node.kubernetes.io/unschedulable", key]) == reason
    assert INTERRUPTION_TAINTS[key] == reason


def test_ordinary_taints_are_not_interruptions() -> None:
    assert interruption_reason([]) is None
    assert interruption_reason(["nvidia.com/gpu", "node.kubernetes.io/not-ready"]) is None
