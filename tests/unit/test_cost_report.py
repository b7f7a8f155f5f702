"""`gpufinops report`: the pure aggregation over AIWorkload objects and its formats."""

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gpufinops.cli import report as cli_report
from gpufinops.cli.main import build_parser, main
from gpufinops.cli.report import (
    FOCUS_COLUMNS,
    build_report,
    focus_rows,
    render_csv,
    render_focus,
    render_json,
    render_table,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def aiw(
    name: str,
    team: str,
    today: float,
    month: float,
    hourly: float = 1.0,
    last: str = "2026-11-27T11:59:00Z",
    namespace: str = "ml",
    **allocation: str,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "Inference", "costAllocation": {"team": team, **allocation}},
        "status": {
            "cost": {"hourlyUSD": hourly, "todayUSD": today, "monthToDateUSD": month,
                     "lastAccountedTime": last},
            "budget": {"state": "WithinBudget", "usedPercent": 12, "enforcement": "None"},
        },
    }  # fmt: skip


OBJECTS = [
    aiw("llm", "search", 10.0, 100.0, project="ranking", model="llama"),
    aiw("embed", "search", 5.0, 50.0, model="bge"),
    aiw("train", "research", 20.0, 300.0, hourly=0.0, project="ranking", model="llama"),
]


def test_groups_sum_each_dimension_to_the_same_total() -> None:
    r = build_report(OBJECTS, NOW, "UTC")
    for dimension in ("team", "project", "model", "workload"):
        groups = r.groups[dimension]
        assert sum(g.month_to_date_usd for g in groups) == 450.0
        assert sum(g.today_usd for g in groups) == 35.0
    teams = {g.name: (g.workloads, g.month_to_date_usd) for g in r.groups["team"]}
    assert teams == {"research": (1, 300.0), "search": (2, 150.0)}
    assert [g.name for g in r.groups["project"]] == ["ranking", "__unset__"]
    assert r.groups["workload"][0].name == "ml/train"  # most expensive first
    # Environment and cost centre group too (unset ones under __unset__).
    tagged = aiw("tagged", "search", 1.0, 10.0, environment="prod", costCenter="CC-7")
    groups = build_report([*OBJECTS, tagged], NOW, "UTC").groups
    assert {g.name: g.month_to_date_usd for g in groups["environment"]} == {
        "__unset__": 450.0, "prod": 10.0,
    }  # fmt: skip
    assert {g.name for g in groups["cost_center"]} == {"__unset__", "CC-7"}


def test_periods_that_ended_read_zero_and_the_projection_uses_the_rate() -> None:
    stale = aiw("old", "t", 7.0, 70.0, hourly=2.0, last="2026-11-26T23:00:00Z")
    row = build_report([stale], NOW, "UTC").workloads[0]
    assert row.today_usd == 0.0 and row.month_to_date_usd == 70.0
    # 70 + $2/h over the 84 hours left in November.
    assert row.projected_month_usd == pytest.approx(70.0 + 2.0 * 84)
    last_month = aiw("older", "t", 7.0, 70.0, last="2026-10-31T12:00:00Z")
    assert build_report([last_month], NOW, "UTC").workloads[0].month_to_date_usd == 0.0


def test_days_follow_the_configured_zone() -> None:
    # 04:30 UTC on the 27th is 23:30 on the 26th in New York: yesterday there.
    late = aiw("ny", "t", 7.0, 70.0, last="2026-11-27T04:30:00Z")
    assert build_report([late], NOW, "America/New_York").workloads[0].today_usd == 0.0
    assert build_report([late], NOW, "UTC").workloads[0].today_usd == 7.0


def test_objects_without_status_or_with_a_damaged_one_report_zero() -> None:
    bare = {"metadata": {"name": "new"}, "spec": {"type": "Training",
                                                  "costAllocation": {"team": "t"}}}  # fmt: skip
    broken = aiw("b", "t", 1.0, 1.0)
    broken["status"]["cost"]["todayUSD"] = "lots"
    rows = build_report([bare, broken], NOW, "UTC").workloads
    assert [(r.today_usd, r.projected_month_usd) for r in rows] == [(0.0, 0.0), (0.0, 0.0)]
    assert rows[0].namespace == "default" and rows[0].budget_state == "NoBudget"


def daily(*days: tuple[str, str, float, float]) -> list[dict[str, Any]]:
    return [{"date": d, "capacityType": ct, "costUSD": usd, "gpuHours": h}
            for d, ct, usd, h in days]  # fmt: skip


def with_days(obj: dict[str, Any], days: list[dict[str, Any]]) -> dict[str, Any]:
    obj["status"]["cost"]["daily"] = days
    return obj


FOCUS_OBJECTS = [
    with_days(aiw("llm", "search", 10.0, 100.0, project="ranking", model="llama"), daily(
        ("2026-10-31", "on-demand", 48.0, 16.0),
        ("2026-11-25", "on-demand", 24.0, 8.0), ("2026-11-25", "spot", 9.0, 6.0),
        ("2026-11-26", "on-demand", 30.0, 10.0), ("2026-11-27", "on-demand", 10.0, 3.3),
    )),
    with_days(aiw("train", "research", 20.0, 300.0, model="bert"), daily(
        ("2026-11-26", "spot", 1.5, 1.0),
    )),
]  # fmt: skip


def test_focus_rows_are_the_complete_days_of_the_month_by_capacity_type() -> None:
    rows = focus_rows(build_report(FOCUS_OBJECTS, NOW, "UTC"))
    # The 27th has not ended at NOW: not charged yet. October is another period.
    periods = [(r["ResourceName"], r["ChargePeriodStart"], r["x_CapacityType"]) for r in rows]
    assert periods == [
        ("llm", "2026-11-25T00:00:00Z", "on-demand"), ("llm", "2026-11-25T00:00:00Z", "spot"),
        ("llm", "2026-11-26T00:00:00Z", "on-demand"), ("train", "2026-11-26T00:00:00Z", "spot"),
    ]  # fmt: skip
    spot = rows[1]
    assert spot["ChargePeriodEnd"] == "2026-11-26T00:00:00Z"
    assert (spot["BilledCost"], spot["PricingQuantity"], spot["ListUnitPrice"]) == (
        "9.0", "6.0", "1.5",
    )  # fmt: skip
    assert spot["PricingCategory"] == "Dynamic" and rows[0]["PricingCategory"] == "Standard"
    assert spot["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
    assert spot["BillingPeriodEnd"] == "2026-12-01T00:00:00Z"
    assert spot["ResourceId"] == "aiworkloads.gpufinops.dev/ml/llm"
    assert spot["SubAccountId"] == "ml" and spot["PricingUnit"] == "GPU-Hours"
    assert json.loads(spot["Tags"]) == {"team": "search", "project": "ranking", "model": "llama"}
    # An unset key is NULL, never a placeholder; nothing FOCUS leaves out is invented.
    train = rows[3]
    assert train["x_Project"] is None and train["x_Team"] == "research"
    assert train["CommitmentDiscountId"] is None and train["ChargeClass"] is None


def test_two_focus_exports_never_overlap_and_a_closed_month_is_final() -> None:
    early = focus_rows(build_report(FOCUS_OBJECTS, NOW, "UTC"))
    later = focus_rows(build_report(FOCUS_OBJECTS, datetime(2026, 11, 28, 1, tzinfo=UTC), "UTC"))
    assert later[: len(early)] == early  # the same days, the same figures
    assert [r["ChargePeriodStart"] for r in later[len(early) :]] == ["2026-11-27T00:00:00Z"]
    keys = [(r["ResourceId"], r["x_CapacityType"], r["ChargePeriodStart"]) for r in later]
    assert len(keys) == len(set(keys))  # no charge period counted twice
    october = focus_rows(build_report(FOCUS_OBJECTS, NOW, "UTC"), month="2026-10")
    assert [(r["ChargePeriodStart"], r["BilledCost"]) for r in october] == [
        ("2026-10-31T00:00:00Z", "48.0")
    ]
    assert october[0]["BillingPeriodEnd"] == "2026-11-01T00:00:00Z"
    # Today so far, on request: its period ends at the last accounted instant.
    today = focus_rows(build_report(FOCUS_OBJECTS, NOW, "UTC"), include_today=True)
    partial = [r for r in today if r["ChargePeriodStart"] == "2026-11-27T00:00:00Z"]
    assert [(r["ChargePeriodEnd"], r["BilledCost"]) for r in partial] == [
        ("2026-11-27T11:59:00Z", "10.0")
    ]
    assert [r for r in today if r not in partial] == early
    with pytest.raises(ValueError, match="--month must be YYYY-MM"):
        focus_rows(build_report(FOCUS_OBJECTS, NOW, "UTC"), month="October")


def test_energy_and_emissions_are_reported_by_group_and_in_the_export() -> None:
    days = daily(("2026-11-25", "spot", 9.0, 6.0), ("2026-11-26", "spot", 3.0, 2.0))
    days[0] |= {"kWh": 0.6, "kgCO2e": 0.24}
    days[1] |= {"kWh": 0.2}
    obj = with_days(aiw("llm", "search", 0.0, 12.0), days)
    report = build_report([obj, *OBJECTS], NOW, "UTC")
    (search,) = [g for g in report.groups["team"] if g.name == "search"]
    assert (search.month_kwh, search.month_kg_co2e) == (pytest.approx(0.8), pytest.approx(0.24))
    rows = focus_rows(report)
    assert [(r["x_EnergyKWh"], r["x_CarbonKgCO2e"]) for r in rows] == [
        ("0.6", "0.24"),
        ("0.2", None),
    ]
    assert "kgCO2e" in render_table(report)


def test_focus_days_follow_the_configured_zone() -> None:
    # A day in Berlin starts at 23:00 UTC the evening before (CET, UTC+1).
    rows = focus_rows(build_report(FOCUS_OBJECTS, NOW, "Europe/Berlin"))
    assert rows[0]["ChargePeriodStart"] == "2026-11-24T23:00:00Z"
    assert rows[0]["ChargePeriodEnd"] == "2026-11-25T23:00:00Z"
    assert rows[0]["BillingPeriodStart"] == "2026-10-31T23:00:00Z"


def test_focus_csv_has_the_spec_columns_and_empty_nulls() -> None:
    text = render_focus(build_report(FOCUS_OBJECTS, NOW, "UTC"))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0]) == FOCUS_COLUMNS and len(parsed) == 4
    assert parsed[3]["x_Project"] == "" and "__unset__" not in text and "None" not in text
    assert "+00:00" not in text


def test_json_csv_and_table_formats() -> None:
    r = build_report(OBJECTS, NOW, "UTC")
    doc = json.loads(render_json(r))
    assert doc["total"]["month_to_date_usd"] == 450.0
    assert {g["name"] for g in doc["by_team"]} == {"search", "research"}
    rows = list(csv.DictReader(io.StringIO(render_csv(r))))
    assert [row["name"] for row in rows] == ["train", "llm", "embed"]
    table = render_table(r)
    assert "by team" in table and "research" in table and "$300.00" in table
    assert "WithinBudget" in table


def test_cli_reads_the_cluster_and_prints_a_format(monkeypatch, capsys) -> None:
    args = build_parser().parse_args(["report", "--format", "json", "-n", "ml"])
    assert args.namespace == "ml" and args.format == "json"
    seen: list[Any] = []

    def fake_read(namespace: str | None, context: str | None) -> list[dict[str, Any]]:
        seen.append((namespace, context))
        return OBJECTS

    monkeypatch.setattr(cli_report, "_read_workloads", fake_read)
    assert main(["report", "--format", "focus", "-n", "ml"]) == 0
    assert seen == [("ml", None)]
    assert capsys.readouterr().out.startswith("AvailabilityZone,BilledCost,")


def test_cli_says_when_the_cluster_cannot_be_read(monkeypatch, capsys) -> None:
    def fail(namespace: str | None, context: str | None) -> list[dict[str, Any]]:
        raise RuntimeError("no kube context")

    monkeypatch.setattr(cli_report, "_read_workloads", fail)
    assert main(["report"]) == 2
    assert "cannot list AIWorkloads: no kube context" in capsys.readouterr().err
