"""The inference benchmark's method: searched baselines, the gpufinops knob, dollars,
the Pareto readings, the versions printed and the missing bins."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.unit.test_sim_cli import run_json, trace_file  # noqa: F401  (fixture)

from gpufinops.cli.main import main
from gpufinops.config.model import load_config
from gpufinops.core.cost.accounting import gpu_prices
from gpufinops.sim import sweep as sweep_module
from gpufinops.sim.policies import CorePolicy, default_spec
from gpufinops.sim.run import PolicyRun, build_policy, run_policy
from gpufinops.sim.service import ServiceModel
from gpufinops.sim.sweep import COARSE, HIGH, LOW, PRECISION, sweep
from gpufinops.sim.traces import Trace, read_trace


def _fake_runs(monkeypatch: pytest.MonkeyPatch, attainment: Any, cost: Any) -> list[float]:
    """``run_policy`` replaced by formulas of the knob; returns the knobs run."""
    ran: list[float] = []

    def run(policy: str, trace: Any, model: Any, *, target: float, **_: Any) -> Any:
        ran.append(target)
        result = PolicyRun(policy, cost(target), attainment(target), 0.0, 0.0, 0, 0.0, 0, 0.0,
                           target)  # fmt: skip
        return None, result

    monkeypatch.setattr(sweep_module, "run_policy", run)
    return ran


def test_the_search_finds_the_largest_knob_reaching_each_slo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Attainment falls linearly from 1 at knob 0 to 0.9 at knob 1; cost falls with it.
    ran = _fake_runs(monkeypatch, lambda k: 1.0 - 0.1 * k, lambda k: 100.0 * (1.5 - k))
    result = sweep("keda", None, None, 0.99, search=(0.95,))  # type: ignore[arg-type]
    assert set(COARSE) <= set(ran)
    for slo, boundary in ((0.99, 0.1), (0.95, 0.5)):
        chosen = sweep_module.replace(result, slo_target=slo).chosen
        assert chosen is not None and chosen.slo_attainment >= slo
        assert boundary - PRECISION <= chosen.target <= boundary + 1e-9
    assert len(ran) == len(set(round(k, 4) for k in ran))  # no knob run twice


def test_a_cheaper_setting_off_the_boundary_is_found_by_the_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cost is not monotone: past 0.5 the queue scales it up again (as KEDA's does).
    _fake_runs(monkeypatch, lambda k: 1.0 - 0.1 * k, lambda k: 100 - 40 * min(k, 0.5) + 60 * k)
    result = sweep("keda", None, None, 0.95)  # type: ignore[arg-type]
    chosen = result.chosen
    assert chosen is not None
    assert chosen.target == pytest.approx(0.05)  # cheapest evaluated point reaching 0.95
    assert all(p.gpu_hours >= chosen.gpu_hours for p in result.points
               if p.slo_attainment >= 0.95)  # fmt: skip


def test_unreachable_and_free_slos_stop_at_the_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fake_runs(monkeypatch, lambda k: 0.5, lambda k: 1.0)
    assert sweep("keda", None, None, 0.99, grid=()).chosen is None  # type: ignore[arg-type]
    assert sweep("keda", None, None, 0.99).chosen is None  # type: ignore[arg-type]
    assert max(ran) == HIGH and min(ran) == LOW  # no bisection without a bracket


def test_the_gpufinops_knob_and_lead_time_reach_the_shipped_settings() -> None:
    values = np.full(3600, 10.0)
    trace = Trace("flat", 1_700_000_000.0, values, values.copy(), "binned", 10.0)
    model = ServiceModel(capacity_per_replica=2.0, max_replicas=50, startup_seconds=600)
    policy = build_policy("gpufinops", trace, model, target=0.95)
    assert isinstance(policy, CorePolicy)
    assert policy.settings.coverage == 0.95
    assert policy.settings.spec.forecast.lead_time_seconds == 600
    shipped = build_policy("reactive", trace, model)
    assert isinstance(shipped, CorePolicy) and shipped.settings.coverage == 0.99
    assert (
        default_spec(
            ServiceModel(capacity_per_replica=1.0), forecast=True
        ).forecast.lead_time_seconds
        == 180
    )


def test_the_coverage_knob_reaches_the_shipped_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """The knob must change what the core decides with, not only the policy's copy."""
    from gpufinops.core.scaling import decide as core_decide
    from gpufinops.core.scaling import tick as scaling_tick

    seen: list[float | None] = []
    shipped = core_decide.decide

    def spy(settings: Any, state: Any, tick: Any) -> Any:
        seen.append(settings.coverage)
        return shipped(settings, state, tick)

    monkeypatch.setattr(scaling_tick, "decide", spy)
    values = np.full(600, 10.0)
    trace = Trace("flat", 1_700_000_000.0, values, values.copy(), "binned", 10.0)
    model = ServiceModel(capacity_per_replica=2.0, max_replicas=50)
    run_policy("reactive", trace, model, target=0.95)
    assert seen and set(seen) == {0.95}
    seen.clear()
    run_policy("reactive", trace, model)
    assert set(seen) == {0.99}


def test_bench_json_bills_every_policy_and_names_what_produced_it(
    trace_file: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    png = tmp_path / "pareto.png"
    argv = ["bench", "inference", str(trace_file), "--json", "--grid", "0.5", "1.0",
            "--pareto", str(png)]  # fmt: skip
    out = run_json(capsys, argv)
    assert isinstance(out, dict)
    price = gpu_prices(load_config(None))["a100-on-demand"]
    assert out["pricing"] == {"pool": "a100-on-demand", "usd_per_gpu_hour": price}
    for name, result in out["results"].items():
        assert out["usd"][name] == pytest.approx(result["gpu_hours"] * price, abs=0.01)
    assert set(out["iso_slo_costs"]) == {"0.95", "0.99", "0.999"}
    for costs in out["iso_slo_costs"].values():
        assert set(costs) == {"gpufinops", "reactive", "static", "keda", "hpa"}
    for name in ("gpufinops", "reactive"):
        grid = out["iso_slo"][name]["grid"]
        assert [p["target"] for p in grid] == [0.9, 0.95, 0.98, 0.99, 0.993, 0.995, 0.997, 0.999]
    env = out["environment"]
    assert set(env) >= {"commit", "python", "numpy", "scikit-learn", "gpufinops"}
    assert env["commit"]
    assert out["demand_signal"] == "completions"
    assert png.stat().st_size > 10_000
    assert main(["bench", "inference", str(trace_file), "--pool", "nope", "--grid", "1"]) == 2
    assert "--pool nope" in capsys.readouterr().err


def test_missing_and_zero_bins_are_kept_or_filled(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    # 60 s bins: 600 at 0, none at 60 and 120 (absent), 0 at 180 (written as zero), 300 at 240.
    path.write_text("timestamp,requests\n0,600\n180,0\n240,300\n")
    kept = read_trace(path)
    assert kept.requests.sum() == pytest.approx(900) and kept.filled_bins == 0
    filled = read_trace(path, fill_missing=True)
    assert filled.filled_bins == 3
    assert filled.requests[60:120].sum() == pytest.approx(525)  # 600 -> 300 in four steps
    assert filled.requests.sum() == pytest.approx(600 + 525 + 450 + 375 + 300)
