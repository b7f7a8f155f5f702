"""Spot replicas in the service simulator: zones, preemption, notices, the policies
and the benchmark's interface, on synthetic availability series."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.test_sim_cli import run_json, trace_file  # noqa: F401  (fixture)

from gpufinops.cli.main import main
from gpufinops.config.model import load_config
from gpufinops.sim.fleet import ON_DEMAND, Fleet, Zone, simulate_fleet, zones_of
from gpufinops.sim.policies import CorePolicy
from gpufinops.sim.run import build_policy
from gpufinops.sim.service import ServiceModel, View, simulate
from gpufinops.sim.spot import SpotTrace, read_zone_trace
from gpufinops.sim.spot_bench import (
    Pricing,
    SpotComparison,
    SpotRun,
    run_spot_policy,
    spot_pricing,
)
from gpufinops.sim.spot_policies import GpufinopsSpot, build_spot_policy
from gpufinops.sim.traces import Trace, TraceError

PRICING = Pricing("spot", 0.5, "od", 1.0)


def flat_trace(seconds: int, rate: float = 20.0) -> Trace:
    values = np.full(seconds, rate)
    return Trace("flat", 1_700_000_000.0, values, values.copy(), "binned")


def zone(name: str, counts: list[int], step: float = 60.0, full: int = 20) -> Zone:
    trace = SpotTrace(name, "v100_1", 1, step, np.asarray(counts, dtype=np.int64))
    return zones_of([trace], full)[0]


class Fixed:
    """A fixed count per class; drains or not."""

    def __init__(self, counts: dict[str, int], drains: bool) -> None:
        self.name = "fixed"
        self.counts = counts
        self.drains = drains

    def decide(self, view: View | None, fleet: Fleet) -> dict[str, int]:
        return dict(self.counts)


MODEL = ServiceModel(capacity_per_replica=5.0, startup_seconds=60, lag_seconds=15)


def test_a_zone_running_dry_preempts_every_replica_and_requeues_their_requests() -> None:
    trace = flat_trace(1800)
    dry = zone("z1", [1] * 10 + [0] * 20)  # dry from 600 s
    result = simulate_fleet(trace, MODEL, Fixed({"z1": 5}, drains=False), [dry])
    assert result.preemptions == 5
    assert result.notices == 5
    # 20 req/s over 5 replicas, 5 s in service: 100 in flight, all re-queued.
    assert result.preempted_requests == pytest.approx(100.0, rel=0.05)
    assert result.outcome.ready[599] == 5 and result.outcome.ready[600] == 0
    # Nothing is billed once the zone has no capacity: the replacements are pending.
    assert result.outcome.billed[700:].max() == 0
    assert result.slo_attainment() < result.outcome.wait_stats()[0]


def test_a_noticed_replica_serves_to_its_end_unless_released() -> None:
    trace = flat_trace(1800)
    dry = zone("z1", [1] * 10 + [0] * 20)
    kept = simulate_fleet(
        trace, MODEL, Fixed({ON_DEMAND: 5, "z1": 5}, drains=True), [dry], notice_seconds=120
    )
    # Never released: serving until the zone runs dry, then its requests are lost.
    assert kept.outcome.ready[599] == 10 and kept.outcome.ready[600] == 5
    assert kept.preempted_work > 0

    class Releasing(Fixed):
        """Lets the noticed replicas go as soon as it sees them."""

        def decide(self, view: View | None, fleet: Fleet) -> dict[str, int]:
            self.released = frozenset(fleet.classes["z1"].noticed)
            return dict(self.counts)

    let_go = simulate_fleet(
        trace, MODEL, Releasing({ON_DEMAND: 5, "z1": 5}, drains=True), [dry], notice_seconds=120
    )
    assert let_go.notices == 5 and let_go.preempted_work == 0.0
    assert let_go.outcome.ready[479] == 10 and let_go.outcome.ready[600] == 5
    assert let_go.spot_seconds < kept.spot_seconds


def test_the_notice_lets_a_draining_policy_lose_no_request() -> None:
    trace = flat_trace(1800)
    dry = zone("z1", [1] * 10 + [0] * 20)
    result = simulate_fleet(
        trace,
        MODEL,
        Fixed({ON_DEMAND: 5, "z1": 5}, drains=True),
        [dry],
        notice_seconds=120,
        drain_seconds=120,
    )
    assert result.notices == 5
    assert result.preempted_work == 0.0
    # Drained at the notice: out of service 120 s before the zone runs dry, billed until it.
    assert result.outcome.ready[479] == 10 and result.outcome.ready[480] == 5
    assert result.outcome.billed[599] == 10 and result.outcome.billed[600] == 5
    assert result.spot_seconds == pytest.approx(5 * 600)


def test_without_a_notice_even_a_draining_policy_loses_the_requests() -> None:
    trace = flat_trace(1800)
    dry = zone("z1", [1] * 10 + [0] * 20)
    result = simulate_fleet(trace, MODEL, Fixed({"z1": 5}, drains=True), [dry], notice_seconds=0)
    assert result.preemptions == 5
    assert result.preempted_requests > 50


def test_a_launch_waits_for_capacity_unbilled() -> None:
    trace = flat_trace(1200)
    late = zone("z1", [0] * 10 + [1] * 10)  # capacity from 600 s
    result = simulate_fleet(trace, MODEL, Fixed({"z1": 4}, drains=False), [late])
    assert result.outcome.billed[:600].max() == 0
    assert result.outcome.billed[600] == 4
    assert result.outcome.ready[659] == 0 and result.outcome.ready[660] == 4


def test_keda_on_demand_in_the_fleet_is_the_single_class_simulator() -> None:
    rng = np.random.default_rng(3)
    values = np.repeat(rng.uniform(5, 60, 40), 90)
    trace = Trace("steps", 1_700_000_000.0, values, values.copy(), "binned")
    model = ServiceModel.normalised(trace, 10)
    alone = simulate(trace, model, build_policy("keda", trace, model, 0.6))
    fleet = simulate_fleet(trace, model, build_spot_policy("keda", model, (), 0.6), [])
    assert np.array_equal(fleet.outcome.billed, alone.billed)
    assert np.allclose(fleet.outcome.backlog, alone.backlog)
    assert fleet.slo_attainment() == pytest.approx(alone.wait_stats()[0])


def test_capacity_is_scaled_from_the_trace_and_wraps() -> None:
    trace = SpotTrace("z", "v100_1", 1, 300.0, np.asarray([16, 8, 0, 4]))
    (z,) = zones_of([trace], 80)
    assert [z.capacity(s) for s in (0, 299, 300, 600, 900, 1200)] == [80, 80, 40, 0, 20, 80]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 1), min_size=4, max_size=30),
    st.sampled_from(["keda-spot", "spothedge", "gpufinops-spot"]),
)
def test_no_zone_ever_holds_more_than_its_capacity(counts: list[int], name: str) -> None:
    trace = flat_trace(1800, 30.0)
    model = ServiceModel.normalised(trace, 6, startup_seconds=60)
    zones = (zone("a", counts, 60.0, 12), zone("b", counts[::-1], 60.0, 12))
    core = build_policy("gpufinops", trace, model, 0.99) if name == "gpufinops-spot" else None
    policy = build_spot_policy(name, model, zones, 0.6, core)  # type: ignore[arg-type]
    result = simulate_fleet(trace, model, policy, zones)
    worst = max(z.capacity(s) for z in zones for s in range(0, 1800, 15))
    spot = result.spot_seconds / 1800
    assert spot <= 2 * worst
    assert 0.0 <= result.slo_attainment() <= 1.0
    if name == "gpufinops-spot" and result.notices:
        assert result.preempted_work == 0.0


def test_gpufinops_spot_falls_back_to_on_demand_while_spot_is_gone() -> None:
    trace = flat_trace(3600, 30.0)
    model = ServiceModel.normalised(trace, 6, startup_seconds=60)
    zones = (zone("a", [1] * 20 + [0] * 40, 60.0, 12), zone("b", [1] * 20 + [0] * 40, 60.0, 12))
    run = run_spot_policy("gpufinops-spot", trace, model, zones, PRICING, 0.99)
    assert run.notices > 0 and run.preempted_requests == 0
    assert run.on_demand_gpu_hours > 0 and run.spot_gpu_hours > 0
    assert run.slo_attainment > 0.9


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_the_raw_skypilot_form_and_the_converted_form_are_both_read(tmp_path: Path) -> None:
    raw = write(tmp_path / "us-west-2a_v100_1.json",
                {"metadata": {"gap_seconds": 300}, "data": [1, 0, 1]})  # fmt: skip
    read = read_zone_trace(raw)
    assert read.zone == "us-west-2a" and read.step_seconds == 300.0
    assert list(read.available) == [1, 0, 1]
    converted = write(tmp_path / "c.json", read.to_json())
    again = read_zone_trace(converted)
    assert again.zone == "us-west-2a" and list(again.available) == [1, 0, 1]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"metadata": {}, "data": [1]}, "metadata.gap_seconds"),
        ({"metadata": {"gap_seconds": -5}, "data": [1]}, "metadata.gap_seconds"),
        ({"metadata": {"gap_seconds": 300}, "data": []}, "data"),
        ({"metadata": {"gap_seconds": 300}, "data": [1, -1]}, "data"),
        ({"data": [1]}, "metadata.gap_seconds"),
        ({"zone": "a", "available": [1]}, "stepSeconds"),
    ],
)
def test_a_bad_file_names_itself_and_the_field(tmp_path: Path, doc: Any, field: str) -> None:
    path = write(tmp_path / "bad.json", doc)
    with pytest.raises(TraceError) as caught:
        read_zone_trace(path)
    assert str(path) in str(caught.value) and field in str(caught.value)


def run(policy: str, usd: float, slo: float, target: float = 0.5) -> SpotRun:
    return SpotRun(policy, target, usd, usd, 0.0, 0.0, slo, 0, 0, 0, 0.0)


def test_ratios_are_dollars_at_the_slo_and_null_when_unreachable() -> None:
    comparison = SpotComparison("t", ("a",), PRICING, 0.99)
    comparison.points = {
        "gpufinops-spot": [run("gpufinops-spot", 40, 0.995), run("gpufinops-spot", 30, 0.98)],
        "keda": [run("keda", 100, 0.999), run("keda", 80, 0.99)],
        "keda-spot": [run("keda-spot", 10, 0.5)],
        "spothedge": [run("spothedge", 50, 0.991)],
    }
    assert comparison.ratios() == {"usd_vs_keda": 0.5, "usd_vs_spothedge": 0.8}
    doc = comparison.to_json()
    assert doc["results"]["keda-spot"]["status"] == "unreachable"
    for result in doc["results"].values():
        assert {"usd", "gpu_hours", "slo_attainment", "preempted_requests"} <= set(result)
    comparison.points["gpufinops-spot"] = [run("gpufinops-spot", 30, 0.98)]
    assert comparison.ratios() == {"usd_vs_keda": None, "usd_vs_spothedge": None}
    comparison.points["gpufinops-spot"] = [run("gpufinops-spot", 40, 0.995)]
    comparison.points["spothedge"] = [run("spothedge", 50, 0.95)]
    assert comparison.ratios() == {"usd_vs_keda": 0.5, "usd_vs_spothedge": None}


def test_prices_are_one_gpus_cheapest_spot_and_on_demand_pools() -> None:
    pricing = spot_pricing(load_config(None))
    assert (pricing.spot_pool, pricing.on_demand_pool) == ("l4-spot", "l4-on-demand")
    assert 0 < pricing.spot < pricing.on_demand
    with pytest.raises(ValueError, match="a100-on-demand"):
        spot_pricing(load_config(None), "a100-on-demand")


def test_bench_with_spot_traces_adds_the_four_policies_and_both_ratios(
    trace_file: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = write(tmp_path / "us-east-1a_v100_1.json",
              {"metadata": {"gap_seconds": 300}, "data": [1, 1, 0, 1]})  # fmt: skip
    b = write(tmp_path / "us-east-1b_v100_1.json",
              {"metadata": {"gap_seconds": 300}, "data": [1, 0, 1, 1]})  # fmt: skip
    argv = ["bench", "inference", str(trace_file), "--json", "--grid", "0.5", "1.0",
            "--spot-trace", str(a), "--spot-trace", str(b)]  # fmt: skip
    out = run_json(capsys, argv)
    assert isinstance(out, dict)
    for name in ("gpufinops-spot", "keda", "keda-spot", "spothedge"):
        assert {"usd", "gpu_hours", "slo_attainment", "preempted_requests"} <= set(
            out["results"][name]
        )
    assert {"usd_vs_keda", "usd_vs_spothedge", "vs_keda", "vs_hpa"} <= set(out["ratios"])
    for name in ("gpufinops", "reactive", "hpa", "static", "oracle"):
        assert name in out["results"]
    assert out["spot"]["zones"] == ["us-east-1a", "us-east-1b"]
    bad = write(tmp_path / "bad.json", {"metadata": {"gap": 1}, "data": [1]})
    argv = ["bench", "inference", str(trace_file), "--grid", "1", "--spot-trace", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "metadata.gap_seconds" in err


def test_a_late_drain_keeps_serving_through_the_notice_and_still_loses_nothing() -> None:
    trace = flat_trace(1800)
    dry = zone("z1", [1] * 10 + [0] * 20)
    policy = Fixed({ON_DEMAND: 5, "z1": 5}, drains=True)
    result = simulate_fleet(trace, MODEL, policy, [dry], notice_seconds=120, drain_seconds=15)
    assert result.preempted_work == 0.0 and result.notices == 5
    assert result.outcome.ready[584] == 10 and result.outcome.ready[585] == 5


def test_pool_records_are_dated_by_the_trace_not_epoch_zero() -> None:
    # Records dated before the first scrape (instant 0) made every pool look watched
    # for a week, so its preemption rate read near zero and nothing was over-provisioned.
    trace = flat_trace(1800, 30.0)
    model = ServiceModel.normalised(trace, 6, startup_seconds=60)
    zones = (zone("a", [1] * 30, 60.0, 12), zone("b", [1] * 30, 60.0, 12))
    core = build_policy("gpufinops", trace, model, 0.99, None)
    assert isinstance(core, CorePolicy)
    policy = GpufinopsSpot(core, ("a", "b"), model)
    simulate_fleet(trace, model, policy, zones)
    watched = [r.watched_since for r in policy.records.values() if r.watched_since is not None]
    assert watched and min(watched) >= trace.start
