"""The autoscaling core: HPA semantics, safety on missing data, no flapping."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.inference import Inference
from gpufinops.core.scaling.behavior import Sample
from gpufinops.core.scaling.decide import Decision, ScalingSettings, ScalingState, Tick, decide
from gpufinops.core.scaling.observation import Observation

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()  # a Monday, 12:00 UTC
SYNC = 15.0


def make(**inference: object) -> ScalingSettings:
    spec = {"targetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 40, **inference}
    return ScalingSettings.from_spec(Inference.model_validate(spec))


def obs(demand: float, queue: float = 0.0, capacity: float | None = None) -> Observation:
    return Observation(queue_depth=queue, running=0, arrival_rate=demand, throughput=None)


def run(
    s: ScalingSettings, observations: list[Observation], current: int = 1, state=None, start=T0
) -> list[Decision]:
    """Ticks where every decision is applied at once and replicas are ready at once."""
    state = state or ScalingState()
    out = []
    for i, o in enumerate(observations):
        d = decide(s, state, Tick(start + i * SYNC, current, current, o))
        out.append(d)
        state, current = d.state, d.desired
    return out


# --- bounds, monotonicity, convergence (properties) ---------------------------------

demands = st.floats(min_value=0, max_value=500, allow_nan=False)
queues = st.floats(min_value=0, max_value=2000, allow_nan=False)
currents = st.integers(min_value=0, max_value=40)


@given(
    demand=demands,
    queue=queues,
    current=currents,
    peak=st.none() | demands,
    min_r=st.integers(0, 10),
    max_r=st.integers(10, 40),
)
def test_bounds_always_respected(demand, queue, current, peak, min_r, max_r) -> None:
    s = ScalingSettings.from_spec(
        Inference.model_validate(
            {
                "targetRef": {"name": "x"},
                "minReplicas": min_r,
                "maxReplicas": max_r,
                "capacityPerReplica": 10,
            }
        )
    )
    current = min(current, max_r)
    d = decide(s, ScalingState(), Tick(T0, current, current, obs(demand, queue), peak))
    assert 0 <= d.desired <= max_r
    if current > 0:
        assert d.desired >= max(min_r, 1)


@given(d1=demands, d2=demands, queue=queues, current=st.integers(1, 40), peak=st.none() | demands)
def test_higher_demand_never_fewer_replicas(d1, d2, queue, current, peak) -> None:
    low, high = sorted((d1, d2))
    s = make(capacityPerReplica=10)
    a = decide(s, ScalingState(), Tick(T0, current, current, obs(low, queue), peak))
    b = decide(s, ScalingState(), Tick(T0, current, current, obs(high, queue), peak))
    assert b.desired >= a.desired


@given(demand=st.floats(min_value=0.5, max_value=350), start=st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_constant_demand_converges_then_never_changes(demand, start) -> None:
    s = make(capacityPerReplica=10)
    decisions = run(s, [obs(demand)] * 120, current=start)  # 30 minutes
    tail = [d.desired for d in decisions[-40:]]
    assert len(set(tail)) == 1, tail
    settled = tail[0]
    # settled within tolerance of the need, never below it by more than 10 %
    assert settled * 10 >= demand / 1.1 - 1e-6


@given(queue=queues, current=st.integers(1, 40), failures=st.integers(0, 20))
def test_missing_data_never_lowers_replicas(queue, current, failures) -> None:
    for extra in ({}, {"fallback": {"replicas": 3, "behavior": "currentReplicasIfHigher"}}):
        s = make(capacityPerReplica=10, **extra)
        state = ScalingState(consecutive_failures=failures)
        unknown = Observation(error="query returned no series")
        d = decide(s, state, Tick(T0, current, current, unknown))
        assert d.desired >= current
        assert not d.metrics_available
        assert d.state.consecutive_failures == failures + 1


@given(demand=demands, current=st.integers(1, 40))
def test_scale_up_never_exceeds_the_default_step(demand, current) -> None:
    s = make(capacityPerReplica=1)
    d = decide(s, ScalingState(), Tick(T0, current, current, obs(demand)))
    assert d.desired <= max(current + 4, 2 * current)


# --- HPA behaviour -------------------------------------------------------------------


def test_scale_down_waits_for_the_stabilization_window() -> None:
    s = make(capacityPerReplica=10)
    decisions = run(s, [obs(200)] * 4 + [obs(20)] * 30, current=20)
    drop_index = next(i for i, d in enumerate(decisions) if d.desired < 20)
    # the last high recommendation was at tick 3; 300 s later is tick 23
    assert drop_index == 3 + 20
    assert decisions[drop_index].desired == 2


def test_custom_step_policy_limits_scale_down() -> None:
    s = make(
        capacityPerReplica=10,
        behavior={
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            }
        },
    )
    decisions = run(s, [obs(20)] * 9, current=10)
    assert [d.desired for d in decisions] == [9, 9, 9, 9, 8, 8, 8, 8, 7]


def test_scale_up_steps_by_max_of_4_pods_or_100_percent() -> None:
    s = make(capacityPerReplica=1)
    decisions = run(s, [obs(39.5)] * 4, current=1)
    assert [d.desired for d in decisions] == [5, 10, 20, 40]


def test_tolerance_holds_small_decreases_only() -> None:
    s = make(capacityPerReplica=10)
    d = decide(s, ScalingState(), Tick(T0, 10, 10, obs(95)))
    assert (d.desired, d.action) == (10, "Hold")
    # Demand above the replicas' capacity is never held: the queue would only grow.
    d = decide(s, ScalingState(), Tick(T0, 10, 10, obs(105)))
    assert (d.desired, d.action) == (11, "ScaleUp")


def test_learned_capacity_is_planned_with_headroom() -> None:
    # Learned capacity is saturated throughput: demand fills 90 % of it.
    state = ScalingState(capacity_per_replica=10)
    d = decide(make(), state, Tick(T0, 10, 10, obs(95)))
    assert d.reactive == 11  # 95 / (10 x 0.9) = 10.6
    # A capacity from the user's load tests is what a replica sustains: used as given.
    d = decide(make(capacityPerReplica=10), state, Tick(T0, 10, 10, obs(95)))
    assert d.reactive == 10


def test_capacity_is_not_learned_while_ready_replicas_change() -> None:
    s = make()
    saturated = Observation(queue_depth=40, running=8, arrival_rate=60, throughput=32)
    state = ScalingState(capacity_per_replica=10)
    # 4 ready now, 2 ready a tick ago: the throughput window mostly saw 2 replicas.
    state = decide(s, state, Tick(T0, 4, 2, saturated)).state
    d = decide(s, state, Tick(T0 + SYNC, 4, 4, saturated))
    assert d.state.capacity_per_replica == 10
    # Saturated with the same replicas for the whole window: 32/s over 4 is the capacity.
    for i in range(2, 10):
        d = decide(s, d.state, Tick(T0 + i * SYNC, 4, 4, saturated))
    assert d.state.capacity_per_replica is not None and d.state.capacity_per_replica < 9


def test_pending_replicas_count_as_capacity_coming() -> None:
    # 10 replicas requested, 2 ready: the same load must not add more (no cascade)
    s = make(capacityPerReplica=10)
    d = decide(s, ScalingState(), Tick(T0, 10, 2, obs(95, queue=30)))
    assert d.desired == 10


def test_excess_queue_adds_drain_capacity() -> None:
    s = make(capacityPerReplica=10, targetQueueDepthPerReplica=5)
    d = decide(s, ScalingState(), Tick(T0, 10, 10, obs(100, queue=50 + 6000)))
    assert d.desired == 20  # 10 for arrivals + 6000/(10*60) to drain


def test_forecast_peak_scales_ahead_of_demand() -> None:
    s = make(capacityPerReplica=10)
    d = decide(s, ScalingState(), Tick(T0, 4, 4, obs(40), forecast_peak=75))
    assert (d.reactive, d.predictive, d.desired) == (4, 8, 8)
    assert "forecast peak" in d.reason


def test_capacity_is_learned_while_saturated() -> None:
    s = make()
    saturated = Observation(queue_depth=40, running=8, arrival_rate=60, throughput=32)
    d = decide(s, ScalingState(), Tick(T0, 4, 4, saturated))
    assert d.state.capacity_per_replica == 8
    assert d.desired == 8  # 60/s at 8/s per replica, queue within 5 per replica... plus drain


def test_without_capacity_scales_on_queue_like_keda() -> None:
    s = make(targetQueueDepthPerReplica=5)
    quiet = decide(s, ScalingState(), Tick(T0, 2, 2, obs(1, queue=3)))
    assert quiet.desired == 2
    busy = decide(s, ScalingState(), Tick(T0, 2, 2, obs(1, queue=30)))
    assert busy.desired == 6


# --- failures and fallback -----------------------------------------------------------


def test_fallback_applies_after_threshold_and_recovery_clears_it() -> None:
    s = make(capacityPerReplica=10, fallback={"failureThreshold": 3, "replicas": 6})
    unknown = Observation(error="Prometheus unreachable")
    decisions = run(s, [unknown] * 4 + [obs(20)], current=2)
    assert [d.action for d in decisions[:4]] == ["Hold", "Hold", "Fallback", "Fallback"]
    assert [d.desired for d in decisions[:4]] == [2, 2, 6, 6]
    assert "Prometheus unreachable" in decisions[0].reason
    assert decisions[4].metrics_available and decisions[4].state.consecutive_failures == 0


def test_fallback_never_drives_to_zero() -> None:
    s = make(fallback={"failureThreshold": 1, "replicas": 0})
    d = decide(s, ScalingState(), Tick(T0, 3, 3, Observation()))
    assert d.desired == 1


# --- scale to zero and schedules -----------------------------------------------------


def test_scale_to_zero_steps_to_one_then_zero_and_wakes() -> None:
    s = make(capacityPerReplica=10, scaleToZero={"enabled": True, "idleSeconds": 60})
    decisions = run(s, [obs(50)] + [obs(0)] * 60 + [obs(3, queue=2)], current=5)
    desired = [d.desired for d in decisions]
    first_zero = desired.index(0)
    assert desired[first_zero - 1] == 1
    assert decisions[first_zero].action == "ScaleToZero"
    assert all(x <= 1 for x in desired[first_zero - 1 : -1])
    assert decisions[-1].action == "Wake" and desired[-1] >= 1


def gone(demand: float | None = None) -> Observation:
    """At zero replicas with an engine preset: the queue query answers with no series
    (the series left with the last pod); demand comes from a gateway's counter."""
    return Observation(
        queue_depth=None, arrival_rate=demand, error="query returned no series: q",
        queue_absent=True,
    )  # fmt: skip


def test_at_zero_absent_engine_series_are_no_queue_and_demand_wakes() -> None:
    s = make(capacityPerReplica=10, minReplicas=0, scaleToZero={"enabled": True})
    quiet = run(s, [gone(), gone(0.0), gone()], current=0)
    assert [(d.action, d.desired) for d in quiet] == [("Hold", 0)] * 3
    assert all(d.metrics_available for d in quiet)  # not a failed read
    woken = decide(s, ScalingState(), Tick(T0, 0, 0, gone(25.0)))
    assert (woken.action, woken.desired) == ("Wake", 3)  # 25/s at 10/s per replica


def test_at_zero_fallback_applies_to_failed_reads_only_so_nothing_flaps() -> None:
    s = make(capacityPerReplica=10, minReplicas=0, scaleToZero={"enabled": True},
             fallback={"failureThreshold": 2, "replicas": 4})  # fmt: skip
    decisions = run(s, [gone()] * 20, current=0)
    assert {(d.action, d.desired) for d in decisions} == {("Hold", 0)}
    assert decisions[-1].state.consecutive_failures == 0
    failing = run(s, [Observation(error="Prometheus unreachable")] * 3, current=0)
    assert [d.desired for d in failing] == [0, 4, 4]  # a real failure still falls back


def test_an_absent_queue_with_replicas_running_is_still_unknown() -> None:
    d = decide(make(capacityPerReplica=10), ScalingState(), Tick(T0, 3, 3, gone(0.0)))
    assert (d.action, d.desired, d.metrics_available) == ("Hold", 3, False)


def test_activation_threshold_keeps_a_trickle_at_zero() -> None:
    s = make(capacityPerReplica=10, minReplicas=0,
             scaleToZero={"enabled": True, "activationThreshold": 0.5})  # fmt: skip
    trickle = decide(s, ScalingState(), Tick(T0, 0, 0, gone(0.2)))
    assert (trickle.action, trickle.desired) == ("Hold", 0)
    assert "not above 0.5/s" in trickle.reason
    woken = decide(s, ScalingState(), Tick(T0, 0, 0, gone(0.8)))
    assert (woken.action, woken.desired) == ("Wake", 1)
    queued = decide(s, ScalingState(), Tick(T0, 0, 0, obs(0.0, queue=1)))
    assert queued.action == "Wake"  # a queued request always wakes


def test_schedule_raises_the_floor_in_its_time_zone() -> None:
    # 08:00 Europe/Paris on Monday 2 March 2026 is 07:00 UTC
    s = make(
        capacityPerReplica=10,
        schedules=[
            {
                "name": "office",
                "cron": "0 8 * * 1-5",
                "timezone": "Europe/Paris",
                "durationSeconds": 3600,
                "minReplicas": 6,
            }
        ],
    )
    opening = datetime(2026, 3, 2, 7, 0, tzinfo=UTC).timestamp()
    before = decide(s, ScalingState(), Tick(opening - 60, 1, 1, obs(5)))
    inside = decide(s, ScalingState(), Tick(opening + 60, 1, 1, obs(5)))
    after = decide(s, ScalingState(), Tick(opening + 3601, 1, 1, obs(5)))
    assert (before.desired, inside.desired, after.desired) == (1, 6, 1)
    assert "schedule office" in inside.reason


def test_history_is_trimmed_to_what_behavior_needs() -> None:
    s = make(capacityPerReplica=10)
    decisions = run(s, [obs(30)] * 100, current=3)
    assert all(x.time > T0 + 99 * SYNC - 300 for x in decisions[-1].state.recommendations)
    assert isinstance(decisions[-1].state.recommendations[0], Sample)


# --- KV-cache pressure ------------------------------------------------------------------


def test_kv_cache_pressure_adds_replicas_before_the_queue_grows() -> None:
    s = make(capacityPerReplica=10, kvCacheTargetUsage=0.6)
    full = Observation(queue_depth=0, running=4, arrival_rate=10.0, kv_cache_usage=0.9)
    d = decide(s, ScalingState(), Tick(T0, 2, 2, full))
    assert d.desired == 3  # ceil(2 x 0.9 / 0.6): the queue alone wants 1 (10/s at 10/s)
    assert "KV cache 90%" in d.reason


def test_the_larger_need_wins_and_unknown_kv_usage_changes_nothing() -> None:
    s = make(capacityPerReplica=10, kvCacheTargetUsage=0.6)
    busy = Observation(queue_depth=0, running=4, arrival_rate=80.0, kv_cache_usage=0.3)
    assert decide(s, ScalingState(), Tick(T0, 8, 8, busy)).desired == 8  # queue wins
    unknown = Observation(queue_depth=0, running=4, arrival_rate=20.0, kv_cache_usage=None)
    plain = make(capacityPerReplica=10)
    with_kv = decide(s, ScalingState(), Tick(T0, 2, 2, unknown))
    without = decide(plain, ScalingState(), Tick(T0, 2, 2, unknown))
    assert with_kv.desired == without.desired


@given(
    usage=st.floats(min_value=0, max_value=1),
    target=st.floats(min_value=0.05, max_value=1),
    ready=st.integers(min_value=1, max_value=40),
)
@settings(deadline=None)
def test_kv_need_brings_usage_to_the_target(usage: float, target: float, ready: int) -> None:
    from gpufinops.core.scaling.decide import kv_cache_need

    need = kv_cache_need(Observation(queue_depth=0, kv_cache_usage=usage), ready, target)
    assert need is not None
    assert need * target >= ready * usage - 1e-6  # enough replicas for the target
    assert (need - 1) * target < ready * usage + 1e-6 or need == 0  # and no more
