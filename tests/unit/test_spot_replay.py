"""Training jobs on replayed spot availability: the trace forms, the replay's physics,
the lower bound, and the placement core's deadline guarantee, on synthetic series."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.cli.main import main
from gpufinops.core.placement.deadline import Capacity, DeadlineView, capacity_now
from gpufinops.sim import spot
from gpufinops.sim.traces import TraceError
from gpufinops.sim.training import TraceJob

STEP = 600.0
PRICES = (1.0, 3.0)


def trace(values: list[int], zone: str = "z1") -> spot.SpotTrace:
    return spot.SpotTrace(zone, "v100_1", 1, STEP, np.asarray(values, dtype=np.int64), zone)


def job(work_h: float, slack: float, expected_h: float | None = None) -> spot.Job:
    work = work_h * 3600
    expected = (expected_h if expected_h is not None else work_h) * 3600
    return spot.Job("j", 1.0, 0.0, work, expected, slack * work)


OPTIONS = spot.Options(restart_seconds=300, checkpoint_seconds=1800, step_seconds=STEP)


# ---------------------------------------------------------------------- trace files


def test_a_skypilot_file_is_converted_with_its_zone_and_instance(tmp_path: Path) -> None:
    raw = tmp_path / "us-west-2a_v100_8.json"
    raw.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1, 0, 1]}))
    converted = spot.convert_skypilot(raw, tmp_path)
    assert (converted.zone, converted.instance, converted.gpus_per_instance) == (
        "us-west-2a", "v100_8", 8,
    )  # fmt: skip
    mine = tmp_path / "out.json"
    mine.write_text(json.dumps(converted.to_json()))
    back = spot.read_spot_trace(mine)
    assert back.available.tolist() == [1, 0, 1] and back.step_seconds == 600
    gcp = tmp_path / "us-central1-a_c3-88.json"
    gcp.write_text(json.dumps({"metadata": {"gap_seconds": 30}, "data": [0, 1]}))
    assert spot.convert_skypilot(gcp).instance == "c3-88"


def test_an_unconverted_or_broken_trace_is_refused_naming_the_fix(tmp_path: Path) -> None:
    raw = tmp_path / "z_v100_1.json"
    raw.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1]}))
    with pytest.raises(TraceError, match=r"convert it with hack/convert-spot-traces\.py"):
        spot.read_spot_trace(raw)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"zone": "z", "stepSeconds": 600, "available": [1, -2]}))
    with pytest.raises(TraceError, match="whole counts"):
        spot.read_spot_trace(bad)


def test_a_directory_gives_one_group_per_folder_and_instance_type(tmp_path: Path) -> None:
    for name in ("a_v100_1", "b_v100_1", "a_k80_8"):
        path = tmp_path / "day" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(trace([1]).to_json()))
    groups = spot.spot_trace_files([tmp_path])
    assert sorted(sorted(p.name for p in g) for g in groups) == [
        ["a_k80_8.json"], ["a_v100_1.json", "b_v100_1.json"],
    ]  # fmt: skip


# ---------------------------------------------------------------------- the replay


def test_on_demand_pays_the_work_and_one_start() -> None:
    out = spot.replay(job(2, 1.5), [trace([0] * 30)], spot.on_demand_policy, OPTIONS, PRICES)
    assert not out.missed and out.preemptions == 0
    assert out.cost_usd == pytest.approx(3.0 * (2 * 3600 + 300) / 3600)


def test_a_preemption_loses_the_work_since_the_last_checkpoint() -> None:
    # Spot for 50 minutes (one start of 5 minutes, 45 of work: 30 checkpointed), then gone.
    always_spot = lambda s, a, o: (Capacity.SPOT, 0) if a[0] else (Capacity.WAIT, None)  # noqa: E731
    seen: list[float] = []

    def watching(state: spot.JobState, available: list[int], o: spot.Options) -> spot.Choice:
        seen.append(state.done)
        return always_spot(state, available, o)

    out = spot.replay(job(10, 3), [trace([1] * 5 + [0] * 4 + [1] * 200)], watching, OPTIONS,
                      PRICES)  # fmt: skip
    assert out.preemptions == 1
    assert seen[5] == 1800.0  # 2,700 s done, 1,800 s checkpointed: that is what is left
    assert not out.missed


def test_the_optimum_uses_every_obtainable_spot_second_when_starts_are_free() -> None:
    j = job(2, 2)
    half = trace(([1] * 6 + [0] * 6) * 10)
    assert spot.optimal_cost(j, [half], PRICES) == pytest.approx(2 * 1.0)  # 2 h of spot in 4
    none = trace([0] * 100)
    assert spot.optimal_cost(j, [none], PRICES) == pytest.approx(2 * 3.0)
    # A start costs 300 s: on-demand only, one start.
    assert spot.optimal_cost(j, [none], PRICES, 300) == pytest.approx(3.0 * 7500 / 3600)


def test_the_optimum_pays_for_each_start_it_makes() -> None:
    # Spot for an hour, gone for one, back: one start after the gap would end at
    # 4 h 05 (late), so the optimum starts twice on spot, 2 h of work and 2 x 300 s.
    j = job(2, 2)
    gaps = trace([1] * 6 + [0] * 6 + [1] * 100)
    assert spot.optimal_cost(j, [gaps], PRICES, 300) == pytest.approx((7200 + 600) / 3600)
    # Gone for two hours: spot cannot finish in time after it; the rest is bought on
    # on-demand, in whole steps (decisions are made at steps, as in the replay):
    # 1 h spot (3,300 s of work), 2 steps of on-demand (900 s), 3,300 s spot to finish.
    longer = trace([1] * 6 + [0] * 12 + [1] * 100)
    mixed = 1.0 * 3600 / 3600 + 3.0 * 1200 / 3600 + 1.0 * 3300 / 3600
    assert spot.optimal_cost(j, [longer], PRICES, 300) == pytest.approx(mixed)


def _simple_bound(j: spot.Job, traces: list[spot.SpotTrace], restart: float) -> float:
    """Every obtainable spot second before the deadline used, one start, nothing lost."""
    step = traces[0].step_seconds
    first, last = round(j.arrival / step), math.floor(j.deadline / step)
    obtainable = np.zeros(last - first, dtype=bool)
    for t in traces:
        obtainable |= t.available[first:last] >= j.instances
    spot_seconds = min(j.work, float(obtainable.sum()) * step)
    work = PRICES[0] * spot_seconds + PRICES[1] * (j.work - spot_seconds)
    return j.gpus * (work + PRICES[0] * restart) / 3600


def _cheapest_schedule(j: spot.Job, traces: list[spot.SpotTrace], steps: int) -> float:
    """Every schedule of nothing / on-demand / spot per zone, replayed: the brute force
    the optimum must equal (checkpoints every second, so a zone running dry loses
    nothing, as the optimum assumes)."""
    import itertools

    options = spot.Options(restart_seconds=STEP, checkpoint_seconds=1.0, step_seconds=STEP)
    choices: list[spot.Choice] = [(Capacity.WAIT, None), (Capacity.ON_DEMAND, None)]
    choices += [(Capacity.SPOT, z) for z in range(len(traces))]
    best = math.inf
    for plan in itertools.product(choices, repeat=steps):

        def scripted(
            state: spot.JobState,
            available: list[int],
            o: spot.Options,
            plan: tuple[spot.Choice, ...] = plan,
        ) -> spot.Choice:
            return plan[min(round(state.now / STEP), steps - 1)]

        out = spot.replay(j, traces, scripted, options, PRICES)
        if not out.missed:
            best = min(best, out.cost_usd)
    return best


@settings(max_examples=12, deadline=None)
@given(
    a=st.lists(st.integers(0, 1), min_size=6, max_size=6),
    b=st.lists(st.integers(0, 1), min_size=6, max_size=6),
    work_steps=st.sampled_from([1.0, 1.5, 2.0, 2.5]),
)
def test_the_optimum_is_the_cheapest_schedule_that_meets_the_deadline(
    a: list[int], b: list[int], work_steps: float
) -> None:
    traces = [trace(a + [0] * 4, "z1"), trace(b + [0] * 4, "z2")]
    work = work_steps * STEP
    j = spot.Job("j", 1.0, 0.0, work, work, 6 * STEP)
    exact = spot.optimal_cost(j, traces, PRICES, STEP)
    assert exact == pytest.approx(_cheapest_schedule(j, traces, 6), abs=1e-3)
    assert exact >= _simple_bound(j, traces, STEP) - 1e-9


availability = st.lists(st.integers(0, 1), min_size=200, max_size=200)


@settings(max_examples=60, deadline=None)
@given(a=availability, b=availability, work_h=st.floats(1, 10), slack=st.sampled_from(spot.SLACKS))
def test_no_policy_costs_less_than_the_optimum(
    a: list[int], b: list[int], work_h: float, slack: float
) -> None:
    traces = [trace(a, "z1"), trace(b, "z2")]
    j = job(work_h, slack)
    bound = spot.optimal_cost(j, traces, PRICES, OPTIONS.restart_seconds)
    assert bound >= _simple_bound(j, traces, OPTIONS.restart_seconds) - 1e-9
    for policy in spot.POLICY_FUNCTIONS.values():
        out = spot.replay(j, traces, policy, OPTIONS, PRICES)
        if not out.missed:
            assert out.cost_usd >= bound - 1e-6


@settings(max_examples=150, deadline=None)
@given(a=availability, work_h=st.floats(1, 12), slack=st.sampled_from(spot.SLACKS))
def test_the_core_meets_every_deadline_when_the_duration_is_known(
    a: list[int], work_h: float, slack: float
) -> None:
    out = spot.replay(job(work_h, slack), [trace(a * 3)], spot.gpufinops_policy, OPTIONS, PRICES)
    assert not out.missed, out


def test_the_rule_goes_on_demand_when_a_lost_attempt_would_be_late() -> None:
    base = dict(
        now=0.0, submitted_at=0.0, expected_seconds=10 * 3600.0, done_seconds=0.0,
        restart_seconds=300.0, at_risk_seconds=0.0, spot_obtainable=True,
    )  # fmt: skip
    roomy = DeadlineView(deadline=20 * 3600.0, on=Capacity.WAIT, **base)  # type: ignore[arg-type]
    assert capacity_now(roomy) == Capacity.SPOT
    tight = DeadlineView(deadline=10.2 * 3600.0, on=Capacity.WAIT, **base)  # type: ignore[arg-type]
    assert capacity_now(tight) == Capacity.ON_DEMAND
    # Idle without spot, ahead of the uniform line: wait; behind it: on-demand.
    late = dict(base, now=5 * 3600.0, done_seconds=0.5 * 3600, spot_obtainable=False)
    behind = DeadlineView(deadline=20 * 3600.0, on=Capacity.WAIT, **late)  # type: ignore[arg-type]
    assert capacity_now(behind) == Capacity.ON_DEMAND
    ahead = DeadlineView(  # type: ignore[arg-type]
        deadline=20 * 3600.0, on=Capacity.WAIT, **dict(late, done_seconds=4 * 3600.0)
    )
    assert capacity_now(ahead) == Capacity.WAIT


# ---------------------------------------------------------------------- the command


def test_the_command_prints_every_policy_and_the_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = tmp_path / "pods.csv"
    rows = ["name,num_gpu,gpu_milli,qos,creation_time,scheduled_time,deletion_time"]
    rows += [f"p{i},1,1000,BE,{i * 7200},{i * 7200},{i * 7200 + 3 * 3600}" for i in range(6)]
    pods.write_text("\n".join(rows) + "\n")
    zone = tmp_path / "z1.json"
    zone.write_text(json.dumps(trace(([1] * 9 + [0] * 3) * 40).to_json()))
    code = main(["simulate", "training", str(pods), "--spot-trace", str(zone),
                 "--slack", "2", "--json"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["results"]) == set(spot.POLICIES)
    for name in spot.POLICIES:
        assert {"cost_usd", "deadline_misses", "jobs"} <= set(out["results"][name])
        assert out["results"][name]["jobs"] == 6
    ours = out["results"]["gpufinops"]["cost_usd"]
    up = out["results"]["uniform-progress"]["cost_usd"]
    assert out["ratios"]["vs_uniform_progress"] == pytest.approx(ours / up, abs=1e-3)
    assert out["ratios"]["vs_optimal"] >= 1.0
    assert not math.isnan(ours)


def test_tick_for_tick_the_simulated_policy_is_the_core_rule() -> None:
    assert spot.gpufinops_policy.__globals__["capacity_now"] is capacity_now


def test_pods_become_jobs_with_deadlines_inside_the_trace() -> None:
    pods = [TraceJob(f"p{i}", 1.0, 86400.0 * i, 3 * 3600.0, i) for i in range(5)]
    traces = [trace([1] * 300)]
    jobs = spot.jobs_for(pods, traces, spot.Options(slack=2, duration_error=0))
    assert len(jobs) == 5
    for j in jobs:
        assert j.deadline - j.arrival == pytest.approx(6 * 3600)
        assert j.deadline <= 300 * STEP and j.expected == j.work


def test_the_plot_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pods = tmp_path / "pods.csv"
    rows = ["name,num_gpu,gpu_milli,qos,creation_time,scheduled_time,deletion_time"]
    rows += [f"p{i},1,1000,BE,{i * 7200},{i * 7200},{i * 7200 + 2 * 3600}" for i in range(3)]
    pods.write_text("\n".join(rows) + "\n")
    zone = tmp_path / "z1.json"
    zone.write_text(json.dumps(trace(([1] * 5 + [0] * 2) * 40).to_json()))
    png = tmp_path / "job.png"
    args = ["simulate", "training", str(pods), "--spot-trace", str(zone), "--slack", "1.5"]
    assert main([*args, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "uniform-progress" in capsys.readouterr().out
