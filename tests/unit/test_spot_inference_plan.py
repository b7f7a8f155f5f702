"""The split of an inference service's replicas over on-demand and spot pools (pure)."""

from hypothesis import given
from hypothesis import strategies as st

from gpufinops.core.events import EventReason
from gpufinops.core.scaling.spot import (
    NO_CAPACITY,
    OnDemandObservation,
    PoolObservation,
    PoolRecord,
    SpotSettings,
    hit_probability,
    plan_spot,
    preemption_rate,
    split_base,
)

POOLS = ("a", "b", "c")
T0 = 1_800_000_000.0


def settings(**kw: object) -> SpotSettings:
    values: dict[str, object] = {"pools": POOLS, "on_demand_base": 1, "replacement_seconds": 300}
    values.update(kw)
    return SpotSettings(**values)  # type: ignore[arg-type]


def test_the_base_stays_on_demand_and_the_rest_is_spread_over_the_pools() -> None:
    plan = plan_spot(10, settings(), OnDemandObservation(1, 1), {}, {}, T0)
    assert plan.on_demand == 1 and plan.fallback == 0
    assert plan.spot == {"a": 3, "b": 3, "c": 3}
    assert split_base(10, settings(on_demand_percent=50)) == (6, 4)
    assert split_base(0, settings()) == (0, 0)


def test_a_noticed_pool_is_drained_avoided_and_its_share_moves_to_the_others() -> None:
    first = plan_spot(10, settings(), OnDemandObservation(1, 1), {}, {}, T0)
    seen = {"a": PoolObservation(ready=3), "b": PoolObservation(ready=1, noticed=("b-1", "b-2")),
            "c": PoolObservation(ready=3)}  # fmt: skip
    plan = plan_spot(10, settings(), OnDemandObservation(1, 1), seen, first.records, T0 + 60)
    assert plan.noticed == ("b-1", "b-2")
    assert plan.drain == (), "they serve until their replacements are ready"
    assert plan.spot["a"] + plan.spot["c"] >= 9, "the need is placed on the available pools"
    assert plan.spot["b"] == 1 + 2, "no new replicas where the notice is; the noticed kept"
    assert plan.fallback == 0, "replacements on the way in pools with room"
    assert plan.replacing, "the sizing core must not learn headroom from this gap"
    # The replacements are ready: the noticed ones go.
    done = {"a": PoolObservation(ready=plan.spot["a"]), "c": PoolObservation(ready=plan.spot["c"]),
            "b": PoolObservation(ready=1, noticed=("b-1", "b-2"))}  # fmt: skip
    after = plan_spot(10, settings(), OnDemandObservation(1, 1), done, plan.records, T0 + 300)
    assert after.drain == ("b-1", "b-2") and after.spot["b"] <= 1
    assert not after.replacing
    # An ordinary scale-up is no preemption gap: the calibration learns from it.
    grow = plan_spot(20, settings(), OnDemandObservation(1, 1), {}, {}, T0)
    assert not grow.replacing
    assert [e.reason for e in plan.events] == [EventReason.SPOT_INTERRUPTED]
    again = plan_spot(10, settings(), OnDemandObservation(1, 1), seen, plan.records, T0 + 75)
    assert again.spot["b"] == 3
    assert not again.events, "one Event per interruption, however many ticks it is seen"
    assert again.records["b"].preemptions == (T0 + 60,)


def test_spot_short_everywhere_falls_back_to_on_demand_until_spot_is_ready() -> None:
    stuck = PoolObservation(pending=3, pending_since=T0)
    seen = dict.fromkeys(POOLS, stuck)
    plan = plan_spot(10, settings(), OnDemandObservation(1, 1), seen, {}, T0 + 200)
    assert plan.fallback == 9 and plan.on_demand == 10
    assert {e.reason for e in plan.events} == {EventReason.SPOT_UNAVAILABLE,
                                               EventReason.SPOT_FALLBACK}  # fmt: skip
    assert all(r.reason == NO_CAPACITY for r in plan.records.values())
    # Spot comes back: starting replicas do not lower the fallback, ready ones do.
    later = T0 + 200 + 900 + 1
    starting = dict.fromkeys(POOLS, PoolObservation(starting=3))
    held = plan_spot(10, settings(), OnDemandObservation(10, 10), starting, plan.records, later)
    assert held.fallback == 9
    ready = dict.fromkeys(POOLS, PoolObservation(ready=3))
    done = plan_spot(10, settings(), OnDemandObservation(10, 10), ready, held.records, later + 1)
    assert done.fallback == 0 and done.on_demand == 1
    assert [e.reason for e in done.events] == [EventReason.SPOT_RECOVERED]


def test_a_pool_preempted_often_gets_extra_replicas_and_the_rate_forgets_the_prior() -> None:
    never = PoolRecord()
    assert abs(preemption_rate(never, T0) - 0.05) < 1e-9
    busy = PoolRecord(preemptions=tuple(T0 - 600 * i for i in range(12)), watched_since=T0 - 7200)
    assert preemption_rate(busy, T0) > 1.5
    records = dict.fromkeys(POOLS, busy)
    plan = plan_spot(31, settings(), OnDemandObservation(1, 1), {}, records, T0)
    hit = hit_probability(preemption_rate(busy, T0), 300)
    assert 1 - (1 - hit) ** 3 > 0.02
    # A pool's loss is likely within a replacement: the largest share (10) is covered.
    assert plan.extra == max(round(30 * hit), 10)
    assert sum(plan.spot.values()) == 30 + plan.extra
    calm = plan_spot(31, settings(), OnDemandObservation(1, 1), {}, {}, T0)
    assert calm.extra == 0, "the prior alone is no likely loss"


@given(
    desired=st.integers(0, 200),
    base=st.integers(0, 20),
    percent=st.integers(0, 100),
    od=st.integers(0, 200),
    pools=st.lists(
        st.tuples(
            st.integers(0, 30), st.integers(0, 30), st.integers(0, 30), st.booleans(), st.booleans()
        ),
        min_size=3,
        max_size=3,
    ),
)
def test_the_plan_never_leaves_the_need_uncovered(desired, base, percent, od, pools) -> None:
    s = settings(on_demand_base=base, on_demand_percent=percent)
    seen = {
        name: PoolObservation(
            ready=r,
            starting=st_,
            pending=p,
            pending_since=T0 - 1000 if stuck else None,
            noticed=("x",) if noticed else (),
        )
        for name, (r, st_, p, stuck, noticed) in zip(POOLS, pools, strict=True)
    }
    plan = plan_spot(desired, s, OnDemandObservation(od, od), seen, {}, T0)
    kept_base, need = split_base(desired, s)
    assert plan.on_demand >= kept_base
    assert all(v >= 0 for v in plan.spot.values())
    # What serves now or is on its way covers the need: spot asked for in available
    # pools, healthy spot elsewhere, and on-demand stand-ins.
    available = [p for p in POOLS if plan.records[p].unavailable_until is None]
    on_way = sum(plan.spot[p] for p in available)
    others = sum(min(plan.spot[p], seen[p].ready + seen[p].starting)
                 for p in POOLS if p not in available)  # fmt: skip
    assert min(on_way + others, need) + plan.fallback >= need
    assert plan.fallback <= need


def test_an_unscheduled_spot_replica_gets_an_on_demand_stand_in_after_a_short_grace() -> None:
    asked = plan_spot(4, settings(on_demand_base=0), OnDemandObservation(0, 0), {}, {}, T0)
    assert asked.fallback == 0, "just asked for: on its way"
    pools = {p: PoolObservation(ready=1) for p in POOLS}
    pools["c"] = PoolObservation(pending=2, pending_since=T0)
    young = plan_spot(4, settings(on_demand_base=0), OnDemandObservation(0, 0), pools, {}, T0 + 10)
    assert young.fallback == 0
    old = plan_spot(4, settings(on_demand_base=0), OnDemandObservation(0, 0), pools, {}, T0 + 45)
    # c's share (one of the four) is unscheduled for 45 s: on-demand stands in for it.
    assert old.spot["c"] == 1 and old.fallback == 1 and old.on_demand == 1
