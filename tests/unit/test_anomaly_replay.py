"""``simulate anomalies``: the fleet, the injections, the hour-by-hour replay through the
core's ``detect``, the scoring rules, and the command."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from gpufinops.cli.main import main
from gpufinops.config.model import AnomalyConfig
from gpufinops.core.cost import anomaly as core
from gpufinops.core.cost.anomaly import Cause, Driver, SpendAnomaly
from gpufinops.sim import anomaly_replay
from gpufinops.sim.anomaly_replay import Injection, Kind, Options, replay, score
from gpufinops.sim.traces import Trace

DAY = 86400
START = 1_700_006_400.0  # 2023-11-15T00:00Z, on an hour boundary
CFG = AnomalyConfig()
LARGE = Options(workloads=8, seed=1, k_low=3.0, k_high=4.0)
"""Anomalies that triple spend at least: far beyond a clean series' baseline and $1."""


def daily(days: int, name: str = "sine") -> Trace:
    """Requests per second following the same sine every day, exactly."""
    t = np.arange(DAY)
    day = 10.0 * (1.5 + np.sin(2 * np.pi * t / DAY))
    rate = np.tile(day, days)
    return Trace(name, START, rate, rate.copy(), "binned", 600.0)


def test_large_anomalies_on_a_clean_series_are_all_found_and_explained() -> None:
    result = replay(daily(8), CFG, LARGE)
    assert result.injected == 16  # two per workload: from day 4, then the last day
    assert {v.injection.kind for v in result.verdicts} == set(Kind)
    assert result.recall == 1.0
    assert result.precision == 1.0
    assert result.cause_accuracy == 1.0
    assert result.recall_by_kind() == dict.fromkeys((k.value for k in Kind), 1.0)
    assert result.median_delay_hours == 0.0
    assert result.false_alarms == 0 and result.false_alarms_per_workload_week == 0.0
    assert result.clean_hours > 0
    assert all(a.scope == "workload" for a in result.raised)  # one page per runaway


def test_injections_start_after_the_baseline_days_and_never_touch() -> None:
    trace = daily(14)
    result = replay(trace, CFG, Options(workloads=6, seed=5))
    base = int(START // 3600)
    first_allowed = base + (CFG.min_days + 1) * 24
    by_workload: dict[str, list[Injection]] = {}
    for v in result.verdicts:
        i = v.injection
        assert first_allowed <= i.first <= i.last < base + 14 * 24
        assert 1 <= i.last - i.first + 1 <= 8 and 1.5 <= i.k <= 4.0
        by_workload.setdefault(i.workload, []).append(i)
    assert len(by_workload) == 6
    for injections in by_workload.values():
        assert len(injections) == 4  # every 72 hours from day 4, and the last 24 hours
        for before, after in itertools.pairwise(injections):
            assert after.first > before.last + 1  # a normal hour between them


def test_a_disabled_detector_raises_nothing() -> None:
    result = replay(daily(8), AnomalyConfig(enabled=False), LARGE)
    assert result.injected == 16
    assert result.raised == () and result.true_positives == 0
    assert result.recall == 0.0
    assert result.precision is None and result.cause_accuracy is None
    assert result.median_delay_hours is None


def test_the_same_seed_gives_the_same_json_and_another_seed_another() -> None:
    trace = daily(8)
    first = json.dumps(replay(trace, CFG, Options(workloads=6, seed=7)).to_json())
    again = json.dumps(replay(trace, CFG, Options(workloads=6, seed=7)).to_json())
    other = json.dumps(replay(trace, CFG, Options(workloads=6, seed=8)).to_json())
    assert first == again
    assert first != other


def test_every_hour_is_judged_once_on_histories_that_end_at_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = core.detect
    calls: list[tuple[int, int, int]] = []

    def spy(members, hour, cfg):  # type: ignore[no-untyped-def]
        members = list(members)
        latest = max(max(m.history) for m in members)
        earliest = min(min(m.history) for m in members)
        calls.append((hour, latest, earliest))
        return real(members, hour, cfg)

    monkeypatch.setattr(anomaly_replay, "detect", spy)
    result = replay(daily(9), CFG, LARGE)
    base = int(START // 3600)
    assert [hour for hour, _, _ in calls] == list(range(base + 24, base + 9 * 24))
    assert all(latest == hour for hour, latest, _ in calls)  # no hour after the judged one
    assert all(hour - earliest < 8 * 24 for hour, _, earliest in calls)  # the core's retention
    assert result.recall == 1.0  # the spy changed nothing


def _anomaly(scope: str, group: str, hour: int, top: str, cause: Cause) -> SpendAnomaly:
    driver = Driver(top, 20.0, 10.0, cause, 2, 1, 1, 0, 0, 2, 1, ())
    return SpendAnomaly(scope, group, hour, 20.0, 10.0, 1.0, (driver,))


def test_scoring_counts_by_top_driver_and_hour_whatever_the_scope() -> None:
    runaway = Injection("a/w1", Kind.RUNAWAY, 2.0, 100, 103, 10.0)
    price = Injection("a/w2", Kind.PRICE, 2.0, 100, 100, 10.0)
    raised = [
        _anomaly("team", "a", 102, "a/w1", Cause.DEMAND),  # found late, wrong cause
        _anomaly("workload", "a/w1", 104, "a/w1", Cause.REPLICAS),  # after it ended
        _anomaly("workload", "a/w3", 101, "a/w3", Cause.DEMAND),  # nothing injected there
        _anomaly("workload", "a/w2", 110, "a/w2", Cause.PRICE),  # no injection at all then
    ]
    result = score("t", 200, Options(workloads=4), CFG, [runaway, price], raised, range(24, 200))
    assert result.true_positives == 1 and result.precision == 0.25
    assert [v.detected_at for v in result.verdicts] == [102, None]
    assert result.verdicts[0].delay == 2 and result.median_delay_hours == 2.0
    assert result.recall == 0.5 and result.cause_accuracy == 0.0
    assert result.recall_by_kind() == {
        "runawayReplicas": 1.0, "demandSurge": None, "dearerPool": 0.0, "largerReplicas": None,
    }  # fmt: skip
    assert result.false_positive_causes == {"ReplicasWithoutDemand": 1, "Demand": 1, "Price": 1}
    assert result.false_alarms == 2  # hours 104 and 110: no injection anywhere
    assert result.clean_hours == 176 - 4
    assert result.false_alarms_per_workload_week == pytest.approx(2 / (4 * 172 / 168))


def test_too_short_a_trace_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least 120"):
        replay(daily(4), CFG)


# ------------------------------------------------------------------ the command


def _csv(tmp_path: Path, name: str, days: int) -> Path:
    """A binned trace of ``days`` daily sines, in 600 s bins with numeric timestamps."""
    stamps = np.arange(0, days * DAY, 600)
    counts = np.round(6000 * (1.5 + np.sin(2 * np.pi * stamps / DAY)))
    path = tmp_path / f"{name}.csv"
    rows = [f"{s},{c:.0f}" for s, c in zip(stamps, counts, strict=True)]
    path.write_text("\n".join(["timestamp,requests", *rows]) + "\n")
    return path


def test_the_command_prints_json_a_table_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, other = _csv(tmp_path, "tiny", 6), _csv(tmp_path, "other", 7)
    options = ["--workloads", "4", "--seed", "3"]
    args = ["simulate", "anomalies", str(tiny), *options]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["trace"], data["workloads"], data["seed"]) == ("tiny", 4, 3)
    assert data["injected"] == 4 and len(data["injections"]) == 4
    assert data["config"]["threshold"] == 4.0
    assert data["raised"] > 0 and data["precision"] == 1.0
    assert len(data["examples"]) == min(3, data["raised"])
    assert set(data["recallByKind"]) == {k.value for k in Kind}
    assert min(i["first"] for i in data["injections"]) >= "1970-01-05T00:00Z"  # from day 4

    assert main([*args, "--json", "--threshold", "100"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert strict["config"]["threshold"] == 100.0 and strict["raised"] == 0

    both = ["simulate", "anomalies", str(tiny), str(other), *options]
    assert main(both) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "recall runaway" in out
    assert out.index("\ntiny ") < out.index("\nother ")

    assert main([*both, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["trace"] for r in results] == ["tiny", "other"]

    assert main(["simulate", "anomalies", str(_csv(tmp_path, "short", 3))]) == 2
    assert "short: 72 whole hours" in capsys.readouterr().err
    assert main([*args, "--threshold", "0"]) == 2
    assert "threshold" in capsys.readouterr().err
