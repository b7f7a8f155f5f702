"""Rightsizing recommendations: each rule, the data it needs, savings never negative."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import NodePool
from gpufinops.core.cost.periods import HOURS_PER_MONTH
from gpufinops.core.cost.recommend import (
    HOURS_PER_DAY,
    Kind,
    Recommendation,
    Usage,
    observe,
    recommend,
)

UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _pool(name: str, capacity: str, gpu: str, gpu_hour: float, rate: float = 0.0) -> NodePool:
    return NodePool.model_validate({
        "name": name, "selector": {"pool": name}, "instanceType": f"{gpu}-box",
        "capacityType": capacity, "gpuType": gpu, "gpusPerNode": 4,
        "hourlyPriceUSD": 4 * gpu_hour, "interruptionRatePerMonth": rate,
    })  # fmt: skip


POOLS = [
    _pool("a100-od", "on-demand", "A100", 4.0),
    _pool("a100-spot", "spot", "A100", 1.5, rate=0.1),
    _pool("l4-od", "on-demand", "L4", 1.0),
    _pool("t4-od", "on-demand", "T4", 0.5),
]


def _spec(kind: str, **section: Any) -> AIWorkloadSpec:
    body: dict[str, Any] = {"type": kind, "costAllocation": {"team": "t"}}
    if kind == "Inference":
        body["inference"] = {"targetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 8,
                             **section}  # fmt: skip
    elif kind == "Training":
        body["training"] = {"jobRef": {"name": "train"}, **section}
    else:
        body["experiment"] = {"targetRef": {"kind": "Deployment", "name": "nb"}, **section}
    return AIWorkloadSpec.model_validate(body)


def _usage(replicas_by_hour: list[int], days: int, gpus: float = 1.0, pool: str = "a100-od"):
    """``days`` whole days with ``replicas_by_hour[h]`` replicas of ``gpus`` GPUs in hour h."""
    usage = observe(Usage(), T0, 0, 0, None, UTC_ZONE)
    t = T0
    for _ in range(days):
        for h in range(HOURS_PER_DAY):
            t += timedelta(hours=1)
            r = replicas_by_hour[h]
            usage = observe(usage, t, r * gpus, r, pool, UTC_ZONE)
    return usage


def _kinds(recs: list[Recommendation] | None) -> list[Kind]:
    assert recs is not None
    return [r.kind for r in recs]


def test_observe_cuts_intervals_at_local_hours_and_never_counts_twice() -> None:
    zone = ZoneInfo("Asia/Kolkata")  # +05:30: local hours are not UTC hours
    usage = observe(Usage(), T0, 0, 0, None, zone)
    later = observe(usage, T0 + timedelta(hours=1), 2, 2, "p", zone)
    assert later.observed_hours[5] == 0.5 and later.observed_hours[6] == 0.5
    assert sum(later.gpu_hours) == 2.0 and later.gpu_hours_by_pool == {"p": 2.0}
    assert observe(later, T0 + timedelta(hours=1), 2, 2, "p", zone) == later
    assert observe(later, T0, 2, 2, "p", zone) == later


def test_nothing_is_said_before_a_day_is_observed() -> None:
    usage = _usage([4] * 24, days=1)
    short = observe(Usage(), T0, 0, 0, None, UTC_ZONE)
    short = observe(short, T0 + timedelta(hours=23), 4, 4, "a100-od", UTC_ZONE)
    assert recommend(_spec("Experiment"), short, POOLS, 5.0) is None
    assert recommend(_spec("Experiment"), usage, POOLS, 5.0) is not None


def test_low_utilisation_recommends_fewer_replicas_and_a_smaller_gpu() -> None:
    usage = _usage([4] * 24, days=2)
    recs = recommend(_spec("Experiment"), usage, POOLS, 20.0)
    by_kind = {r.kind: r for r in recs or []}
    # 4 replicas peaking at 20 %: 4 x 20 / 70 -> 2 replicas; 2 GPUs x $4 x 730 h saved.
    assert by_kind[Kind.FEWER_REPLICAS].estimated_monthly_saving_usd == 2 * 4.0 * HOURS_PER_MONTH
    # Next step down from A100 ($4) on on-demand is L4 ($1), not T4: 4 GPUs x $3 x 730 h.
    small = by_kind[Kind.SMALLER_GPU]
    assert "L4" in small.message and small.estimated_monthly_saving_usd == 4 * 3.0 * 730
    assert _kinds(recs) == sorted(
        _kinds(recs), key=lambda k: -by_kind[k].estimated_monthly_saving_usd
    )


def test_busy_gpus_or_unknown_utilisation_recommend_no_resizing() -> None:
    usage = _usage([4] * 24, days=2)
    assert _kinds(recommend(_spec("Experiment"), usage, POOLS, 85.0)) == [Kind.USE_SPOT]
    assert _kinds(recommend(_spec("Experiment"), usage, POOLS, None)) == [Kind.USE_SPOT]


def test_inference_fewer_replicas_names_the_floor() -> None:
    usage = _usage([4] * 24, days=2)
    recs = recommend(_spec("Inference", minReplicas=4), usage, POOLS, 10.0)
    fewer = next(r for r in recs or [] if r.kind == Kind.FEWER_REPLICAS)
    assert "lower minReplicas from 4 to 1" in fewer.message


def test_spot_is_recommended_only_for_interruption_tolerant_work() -> None:
    usage = _usage([2] * 24, days=2)
    assert Kind.USE_SPOT not in _kinds(recommend(_spec("Inference"), usage, POOLS, 90.0))
    on_demand_only = {"spot": {"enabled": False}, "checkpoint": {"intervalSeconds": 1800}}
    recs = recommend(_spec("Training", **on_demand_only), usage, POOLS, 90.0)
    assert _kinds(recs) == [Kind.USE_SPOT]
    # $4 on-demand vs $1.5 spot on 2 GPUs, minus 15 min lost per interruption.
    rework = 0.1 / 730 * 0.25
    expected = 2 * 730 * 4.0 - 2 * 730 * (1 + rework) * 1.5
    assert recs is not None and recs[0].estimated_monthly_saving_usd == round(expected, 2)
    no_checkpoints = {"spot": {"enabled": False}}
    assert _kinds(recommend(_spec("Training", **no_checkpoints), usage, POOLS, 90.0)) == []
    assert _kinds(recommend(_spec("Training"), usage, POOLS, 90.0)) == []  # spot already on


def test_a_floor_held_through_the_night_recommends_a_schedule() -> None:
    day = [3] * 8 + [8] * 14 + [3] * 2  # 22:00-08:00 at the floor of 3, busy by day
    spec = _spec("Inference", minReplicas=3)
    recs = recommend(spec, _usage(day, days=3), POOLS, None)
    (schedule,) = [r for r in recs or [] if r.kind == Kind.ADD_SCHEDULE]
    assert "from 22:00 for 10 h" in schedule.message and "'0 8 * * *'" in schedule.message
    assert schedule.estimated_monthly_saving_usd == round(2 * 4.0 * 10 * 730 / 24, 2)
    # Two days are not a pattern; a service already scheduled needs no advice.
    assert Kind.ADD_SCHEDULE not in _kinds(recommend(spec, _usage(day, days=2), POOLS, None))
    window = {"name": "day", "cron": "0 8 * * *", "durationSeconds": 50400, "minReplicas": 8}
    scheduled = _spec("Inference", minReplicas=3, schedules=[window])
    assert recommend(scheduled, _usage(day, days=3), POOLS, None) == []


def test_a_workload_off_every_priced_pool_gets_nothing() -> None:
    assert recommend(_spec("Experiment"), _usage([2] * 24, 2, pool="gone"), POOLS, 5.0) is None


specs = st.sampled_from([
    _spec("Inference"), _spec("Inference", minReplicas=3), _spec("Experiment"),
    _spec("Training", spot={"enabled": False}, checkpoint={"intervalSeconds": 600}),
    _spec("Training"),
])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    spec=specs,
    profile=st.lists(st.integers(0, 8), min_size=24, max_size=24),
    days=st.integers(0, 4),
    gpus=st.sampled_from([0.5, 1.0, 2.0]),
    pool=st.sampled_from([p.name for p in POOLS]),
    util=st.one_of(st.none(), st.floats(0, 100)),
)
def test_properties(spec, profile, days, gpus, pool, util) -> None:
    usage = _usage(profile, days, gpus, pool)
    recs = recommend(spec, usage, POOLS, util)
    if days == 0 or sum(profile) == 0:
        assert recs is None  # no data, no advice
        return
    assert recs is not None and len(recs) <= 10
    assert all(r.estimated_monthly_saving_usd >= 1.0 for r in recs)  # never negative
    kinds = _kinds(recs)
    assert len(set(kinds)) == len(kinds)
    if spec.type == "Inference":
        assert Kind.USE_SPOT not in kinds
    if spec.type != "Inference":
        assert Kind.ADD_SCHEDULE not in kinds
    if util is None:
        assert Kind.FEWER_REPLICAS not in kinds and Kind.SMALLER_GPU not in kinds
    if pool == "a100-spot":
        assert Kind.USE_SPOT not in kinds
    savings = [r.estimated_monthly_saving_usd for r in recs]
    assert savings == sorted(savings, reverse=True)
    # No rule saves more than the workload spends.
    spend = usage.mean_gpus * next(p.gpu_hourly_price_usd for p in POOLS if p.name == pool) * 730
    assert all(s <= spend + 0.01 for s in savings)


# ------------------------------------------------------------------ in the cost pass


def test_the_cost_pass_writes_recommendations_once_enough_is_seen() -> None:
    import asyncio

    from tests.unit.test_cost_allocations import CONFIG, POOLS, Cluster, gpu_pod, gpu_pod_record
    from tests.unit.test_cost_allocations import T0 as START
    from tests.unit.test_cost_allocations import pod as pod_body

    from gpufinops.controllers.cost import CostAccountant, WorkloadView

    spec = {
        "type": "Experiment",
        "costAllocation": {"team": "research"},
        "experiment": {"targetRef": {"kind": "Deployment", "name": "llm"}},
    }
    pods = [gpu_pod(gpu_pod_record(pod_body(n, node="a100-0"))) for n in "abcd"]  # type: ignore[arg-type]
    cluster = Cluster()
    patches: list[dict[str, Any]] = []
    effects = cluster.effects()
    write = effects.write_status

    def recording(namespace: str, name: str, patch: dict[str, Any]) -> None:
        patches.append(patch)
        write(namespace, name, patch)

    effects.write_status = recording
    reads: list[tuple[str, str, str, float]] = []

    def utilization(namespace: str, kind: str, name: str, window: float) -> float:
        reads.append((namespace, kind, name, window))
        return 10.0

    def tick(acct: CostAccountant, at: datetime) -> None:
        status = cluster.status
        view = WorkloadView("ml", "w", {"kind": "AIWorkload"}, spec, status.get("cost") or {},
                            status.get("budget") or {}, status.get("recommendations"),
                            status.get("observedUsage"))  # fmt: skip
        asyncio.run(acct.tick(at, [view], pods, POOLS, lambda ns, n: 4))

    acct = CostAccountant(CONFIG, effects, utilization=utilization)
    for k in range(48):  # 23.5 hours: not enough yet
        tick(acct, START + timedelta(minutes=30 * k))
    assert "recommendations" not in cluster.status
    assert reads and reads[0][:3] == ("ml", "Deployment", "llm")
    tick(acct, START + timedelta(hours=24))
    (rec,) = cluster.status["recommendations"]
    assert rec["kind"] == "FewerReplicas"
    # 4 A100 replicas peaking at 10 %: one would do, 3 GPUs x $4 x 730 h saved.
    assert rec["estimatedMonthlySavingUSD"] == 3 * 4.0 * 730
    # Never conditions; the observations the recommendations rest on, with their window.
    assert set(patches[-1]) - {"spendHistory"} == {
        "cost",
        "budget",
        "recommendations",
        "observedUsage",
    }
    observed = cluster.status["observedUsage"]
    assert observed["observedSince"] == START.isoformat().replace("+00:00", "Z")
    assert sum(observed["observedHours"]) == 24.0 and observed["peakUtilizationPercent"] == 10.0
    # Unchanged recommendations are not written again.
    tick(acct, START + timedelta(hours=24, minutes=30))
    assert "recommendations" not in patches[-1]
    # A restarted operator goes on from what status holds: its first recommendation
    # pass (not a day later) confirms them, the downtime not counted as observed.
    restarted = CostAccountant(CONFIG, effects, utilization=utilization)
    tick(restarted, START + timedelta(hours=30))
    assert cluster.status["recommendations"] == [rec]
    assert restarted.books[("ml", "w")].usage.total_hours == 24.5
    tick(restarted, START + timedelta(hours=30, minutes=30))
    assert restarted.books[("ml", "w")].usage.total_hours == 25.0
    # A status that accounting cannot have written is observed again, not believed.
    cluster.status["observedUsage"]["gpuHours"][0] = -5.0
    fresh = CostAccountant(CONFIG, effects, utilization=utilization)
    tick(fresh, START + timedelta(hours=31))
    assert fresh.books[("ml", "w")].usage.total_hours == 0.0


def test_the_report_lists_recommendations_in_every_format() -> None:
    import csv
    import io
    import json

    from gpufinops.cli.report import build_report, render_csv, render_json, render_table

    recs = [
        {"kind": "UseSpot", "message": "spot is cheaper", "estimatedMonthlySavingUSD": 50.0},
        {"kind": "FewerReplicas", "message": "idle GPUs", "estimatedMonthlySavingUSD": 80.0},
        {"kind": "Broken"},  # malformed entries are left out, not fatal
    ]
    observed = Usage(observed_hours=(1.5,) * 24, first_time=T0 - timedelta(days=2),
                     last_time=T0).to_status(12.0).to_wire()  # fmt: skip
    obj = {
        "metadata": {"name": "nb", "namespace": "ml"},
        "spec": {"type": "Experiment", "costAllocation": {"team": "research"}},
        "status": {"recommendations": recs, "observedUsage": observed},
    }
    report = build_report([obj], T0, "UTC")
    (row,) = report.workloads
    assert [r["kind"] for r in row.recommendations] == ["FewerReplicas", "UseSpot"]
    assert row.potential_monthly_saving_usd == 80.0  # alternatives: the largest, not the sum
    doc = json.loads(render_json(report))
    assert doc["workloads"][0]["recommendations"][0]["estimated_monthly_saving_usd"] == 80.0
    assert doc["total"]["potential_monthly_saving_usd"] == 80.0
    (cells,) = csv.DictReader(io.StringIO(render_csv(report)))
    assert cells["recommendations"].startswith("FewerReplicas ($80.00): idle GPUs; UseSpot")
    assert cells["potential_monthly_saving_usd"] == "80.0"
    # The evidence window: how much was observed, from when to when.
    assert (row.observed_hours, row.observed_since, row.observed_until) == (
        36.0, "2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z",
    )  # fmt: skip
    assert doc["workloads"][0]["observed_hours"] == 36.0
    assert "36 h, 2026-10-31 to 2026-11-02" in render_table(report)
    table = render_table(report)
    assert "recommendations" in table and "FewerReplicas" in table and "$80.00" in table
