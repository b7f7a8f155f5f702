"""The split of an inference service's replicas over on-demand and spot pools (pure)."""

from dataclasses import replace

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
    place,
    plan_spot,
    preemption_rate,
    split_base,
    survive_extra,
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
    # 9 over three pools, and 3 extras: the loss of any one pool leaves 8 (80 % of 9).
    assert plan.spot == {"a": 4, "b": 4, "c": 4} and plan.extra == 3
    bare = plan_spot(10, settings(by_preemption_rate=False), OnDemandObservation(1, 1), {}, {}, T0)
    assert bare.spot == {"a": 3, "b": 3, "c": 3} and bare.extra == 0
    assert split_base(10, settings(on_demand_percent=50)) == (6, 4)
    assert split_base(0, settings()) == (0, 0)


def test_a_noticed_pool_is_drained_avoided_and_its_share_moves_to_the_others() -> None:
    first = plan_spot(10, settings(), OnDemandObservation(1, 1), {}, {}, T0)
    seen = {"a": PoolObservation(ready=3), "b": PoolObservation(ready=1, noticed=("b-1", "b-2")),
            "c": PoolObservation(ready=3)}  # fmt: skip
    plan = plan_spot(10, settings(), OnDemandObservation(1, 1), seen, first.records, T0 + 60)
    assert plan.noticed == ("b-1", "b-2")
    assert plan.drain == (), "they serve until their replacements are ready"
    assert plan.spot["a"] + plan.spot["c"] >= 8, "what the notice takes goes to the others"
    assert plan.spot["b"] == 1 + 2, "no new replicas where the notice is; the noticed kept"
    assert plan.spot["a"] + plan.spot["c"] + 1 >= 9, "b's healthy one still serves"
    assert plan.fallback == 0, "replacements on the way in pools with room"
    assert plan.replacing, "the sizing core must not learn headroom from this gap"
    # The replacements are ready: the noticed ones go.
    done = {"a": PoolObservation(ready=plan.spot["a"]), "c": PoolObservation(ready=plan.spot["c"]),
            "b": PoolObservation(ready=1, noticed=("b-1", "b-2"))}  # fmt: skip
    after = plan_spot(10, settings(), OnDemandObservation(1, 1), done, plan.records, T0 + 300)
    assert after.drain == ("b-1", "b-2") and after.spot["b"] <= 1
    assert after.replacing, "the queue the gap left may still be draining"
    calm = plan_spot(10, settings(), OnDemandObservation(1, 1), done, after.records, T0 + 661)
    assert not calm.replacing, "two replacement times after the preemption, it learns again"
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
    # A pool's loss is likely within a replacement: the extras keep 80 % of the need
    # (24) through the loss of the fullest pool, and no fewer would.
    assert sum(plan.spot.values()) == 30 + plan.extra
    assert 30 + plan.extra - max(plan.spot.values()) >= 24
    assert plan.extra == survive_extra(30, lambda n: place(n, POOLS, {}, POOLS, {}), 3) == 6
    assert 30 + 5 - max(place(35, POOLS, {}, POOLS, {}).values()) < 24
    # One pool left: no other pool can hold extras; on-demand keeps 80 % of the need
    # once its preemptions make a loss likely, not on the prior alone.
    one = settings(pools=("a",))
    calm = plan_spot(11, one, OnDemandObservation(1, 1), {}, {}, T0)
    assert calm.fallback == 0 and calm.spot == {"a": 10}
    alone = plan_spot(11, one, OnDemandObservation(1, 1), {}, {"a": busy}, T0)
    assert alone.fallback == 8 and alone.on_demand == 9 and alone.spot["a"] >= 10
    assert "one spot pool left" in alone.events[0].message


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
    s = settings(on_demand_base=0, by_preemption_rate=False)
    asked = plan_spot(4, s, OnDemandObservation(0, 0), {}, {}, T0)
    assert asked.fallback == 0, "just asked for: on its way"
    pools = {p: PoolObservation(ready=1) for p in POOLS}
    pools["c"] = PoolObservation(pending=2, pending_since=T0)
    young = plan_spot(4, s, OnDemandObservation(0, 0), pools, {}, T0 + 10)
    assert young.fallback == 0
    old = plan_spot(4, s, OnDemandObservation(0, 0), pools, {}, T0 + 45)
    # c's two are unscheduled for 45 s: they stay asked there, on-demand stands in.
    assert old.spot == {"a": 1, "b": 1, "c": 2} and old.fallback == 2 and old.on_demand == 2


def test_a_pool_coming_back_takes_new_replicas_and_moves_none_that_serve() -> None:
    """A pool back from its unavailable time once took an even share at once: the
    other pools' ready replicas were scaled down for replicas there that could not be
    scheduled, a gap of one start-up for every move."""
    s = settings(by_preemption_rate=False)
    back = {"c": PoolRecord(unavailable_until=T0 - 1, reason=NO_CAPACITY)}
    seen = {"a": PoolObservation(ready=5), "b": PoolObservation(ready=4)}
    plan = plan_spot(10, s, OnDemandObservation(1, 1), seen, back, T0)
    assert plan.spot == {"a": 5, "b": 4, "c": 0}
    grown = plan_spot(13, s, OnDemandObservation(1, 1), seen, back, T0)
    assert grown.spot == {"a": 5, "b": 4, "c": 3}, "new replicas go to the emptiest pool"


def test_a_scale_down_takes_pending_then_starting_then_ready_replicas() -> None:
    s = settings(by_preemption_rate=False)
    seen = {"a": PoolObservation(ready=4), "b": PoolObservation(ready=1, starting=2),
            "c": PoolObservation(pending=2, pending_since=T0)}  # fmt: skip
    assert plan_spot(8, s, OnDemandObservation(1, 1), seen, {}, T0).spot == {
        "a": 4, "b": 3, "c": 0}  # fmt: skip
    assert plan_spot(6, s, OnDemandObservation(1, 1), seen, {}, T0).spot == {
        "a": 4, "b": 1, "c": 0}  # fmt: skip
    assert plan_spot(3, s, OnDemandObservation(1, 1), seen, {}, T0).spot == {
        "a": 1, "b": 1, "c": 0}, "ready ones last, from the fullest pool"  # fmt: skip


def test_a_replacement_in_a_pool_running_none_of_ours_gets_a_stand_in_at_once() -> None:
    """A notice leaves 120 s where a replica takes longer to start: a replacement asked
    of a pool whose capacity nobody has seen must not wait out the pending grace."""
    s = settings(by_preemption_rate=False)
    seen = {"a": PoolObservation(noticed=("a-1", "a-2", "a-3")), "b": PoolObservation(ready=3)}
    plan = plan_spot(7, s, OnDemandObservation(1, 1), seen, {}, T0)
    assert plan.spot["c"] == 3 and plan.fallback == 3, "c is unproven: on-demand at once"
    calm = plan_spot(7, s, OnDemandObservation(1, 1), {"b": PoolObservation(ready=3)}, {}, T0)
    assert calm.fallback == 0, "without a notice, a new replica gets the grace"


def test_a_noticed_replica_not_yet_replaced_is_drained_before_its_instance_goes() -> None:
    """Kept until replaced, a noticed replica whose replacement starts slower than the
    notice lasts was still serving when its instance went: its in-flight requests were
    lost. It is now drained DRAIN_AHEAD_SECONDS before the notice's deadline."""
    s = settings(by_preemption_rate=False, replacement_seconds=180)
    seen = {"a": PoolObservation(ready=3, noticed=("a-1", "a-2"),
                                 notice_reason="SpotInterruptionNotice (aws-nth)"),
            "b": PoolObservation(ready=3)}  # fmt: skip
    first = plan_spot(9, s, OnDemandObservation(1, 1), seen, {}, T0)
    assert first.drain == () and first.spot["a"] == 3 + 2, "kept while it serves"
    early = plan_spot(9, s, OnDemandObservation(1, 1), seen, first.records, T0 + 60)
    assert early.drain == ()
    late = plan_spot(9, s, OnDemandObservation(1, 1), seen, first.records, T0 + 120 - 30)
    assert late.drain == ("a-1", "a-2") and late.spot["a"] == 3, "drained, not asked again"
    # GKE gives 30 s: drained at once; a node already gone: at once; no deadline
    # (a rebalance recommendation): kept until replaced.
    for reason, drained in (("ImpendingNodeTermination (gke)", True), ("NodeGone", True),
                            ("RebalanceRecommendation (aws-nth)", False)):  # fmt: skip
        other = {**seen, "a": replace(seen["a"], notice_reason=reason)}
        plan = plan_spot(9, s, OnDemandObservation(1, 1), other, {}, T0)
        assert (plan.drain == ("a-1", "a-2")) is drained, reason
