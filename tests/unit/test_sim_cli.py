"""The ``simulate inference``, ``bench inference`` and ``forecast backtest`` commands."""

import json
from pathlib import Path

import numpy as np
import pytest

from gpufinops.cli.main import main

FIELDS = {
    "policy",
    "gpu_hours",
    "oracle_gpu_hours",
    "slo_attainment",
    "p95_wait_seconds",
    "p99_wait_seconds",
    "scale_events",
}


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three hours of 10 s bins with a ramp and noise, ISO timestamps."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("traces") / "ramp.csv"
    lines = ["timestamp,requests"]
    start = 1_715_472_000  # 2024-05-12T00:00:00Z
    for i in range(3 * 360):
        level = 100 + 80 * np.sin(np.pi * i / 1080) ** 2
        count = int(rng.poisson(level))
        stamp = np.datetime_as_string(np.datetime64(start + 10 * i, "s"), unit="s")
        lines.append(f"{stamp}Z,{count}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_simulate_json_has_the_documented_fields(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_json(capsys, ["simulate", "inference", str(trace_file), "--json"])
    assert isinstance(out, dict)
    assert set(out) >= FIELDS
    assert out["policy"] == "gpufinops"
    assert out["gpu_hours"] >= out["oracle_gpu_hours"] > 0
    assert 0 <= out["slo_attainment"] <= 1


def test_simulate_several_policies_table_and_plot(
    trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "run.png"
    argv = ["simulate", "inference", str(trace_file), "--policy", "keda", "--policy", "hpa"]
    assert main([*argv, "--target", "0.6", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "keda" in text and "hpa" in text and "oracle" in text
    assert png.stat().st_size > 10_000
    out = run_json(capsys, ["simulate", "inference", str(trace_file), "--policy", "all", "--json"])
    assert isinstance(out, dict)
    assert [r["policy"] for r in out["results"]] == [
        "gpufinops", "reactive", "keda", "hpa", "static", "oracle",
    ]  # fmt: skip


def test_bench_json_ratios_and_unreachable_baselines(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "inference", str(trace_file), "--json", "--grid", "0.5", "1.0"]
    out = run_json(capsys, argv)
    assert isinstance(out, dict)
    assert set(out["ratios"]) == {"vs_keda", "vs_hpa", "vs_oracle"}
    gpufinops = out["results"]["gpufinops"]
    for name in ("keda", "hpa"):
        iso = out["iso_slo"][name]
        assert iso["status"] in ("ok", "unreachable")
        ratio = out["ratios"][f"vs_{name}"]
        if iso["status"] == "unreachable" or gpufinops["slo_attainment"] < out["slo_target"]:
            assert ratio is None
        else:
            assert ratio == pytest.approx(gpufinops["gpu_hours"] / iso["gpu_hours"], abs=1e-3)
    # an impossible target makes every baseline unreachable and every ratio null
    out = run_json(capsys, [*argv, "--slo-target", "1.0", "--startup-seconds", "600"])
    assert isinstance(out, dict)
    assert out["ratios"] == {"vs_keda": None, "vs_hpa": None, "vs_oracle": None}
    assert any("unreachable" in note for note in out["notes"])


def test_bench_markdown(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "inference", str(trace_file), "--grid", "0.6"]) == 0
    text = capsys.readouterr().out
    assert "| policy | setting | GPU-hours |" in text
    assert "vs_keda" in text and "CPU:" in text


def test_backtest_reports_too_short_traces_clearly(
    trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["forecast", "backtest", str(trace_file), "--json"]) == 2
    assert "needs" in capsys.readouterr().err


def test_bad_inputs_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,requests\n0,1\n10,oops\n")
    assert main(["simulate", "inference", str(bad)]) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    assert main(["simulate", "inference"]) == 2
    assert "trace file or --prometheus" in capsys.readouterr().err
    assert main(["simulate", "inference", "--prometheus", "http://x"]) == 2
    assert "--query" in capsys.readouterr().err
