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


def test_the_lower_bound_uses_every_obtainable_spot_second() -> None:
    j = job(2, 2)
    half = trace(([1] * 6 + [0] * 6) * 10)
    assert spot.optimal_cost(j, [half], PRICES) == pytest.approx(2 * 1.0)  # 2 h of spot in 4
    none = trace([0] * 100)
    assert spot.optimal_cost(j, [none], PRICES) == pytest.approx(2 * 3.0)


availability = st.lists(st.integers(0, 1), min_size=200, max_size=200)


@settings(max_examples=60, deadline=None)
@given(a=availability, b=availability, work_h=st.floats(1, 10), slack=st.sampled_from(spot.SLACKS))
def test_no_policy_costs_less_than_the_lower_bound(
    a: list[int], b: list[int], work_h: float, slack: float
) -> None:
    traces = [trace(a, "z1"), trace(b, "z2")]
    j = job(work_h, slack)
    bound = spot.optimal_cost(j, traces, PRICES)
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
