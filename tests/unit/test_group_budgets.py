"""Team and namespace budgets: the spend of their workloads together, alerting once per
period and threshold, configured by the admin and alert-only."""

import pytest
from pydantic import ValidationError

from gpufinops.adapters.alerts import BudgetAlert, alertmanager_payload
from gpufinops.config.model import GroupBudgets, OperatorConfig
from gpufinops.core.cost.budget import AlertReason, Spend
from gpufinops.core.cost.group_budget import NAMESPACE, TEAM, Group, plan_groups

DAY, MONTH = "2026-12-07", "2026-12"


def spend(today: float, month: float = 0.0) -> Spend:
    return Spend(DAY, MONTH, today, month or today, month or today)


BUDGETS = GroupBudgets.model_validate(
    {"teams": {"search": {"dailyUSD": 100}}, "namespaces": {"ml": {"monthlyUSD": 1000}}}
)


def test_a_team_budget_sums_its_workloads_and_alerts_once_per_threshold() -> None:
    members = {Group(TEAM, "search"): [spend(30), spend(25)]}  # $55 of $100 today
    (team, namespace) = plan_groups(BUDGETS, members, {}, DAY, MONTH)
    assert team.spend.today_usd == 55 and team.state.state == "WithinBudget"
    assert [a.reason for a in team.alerts] == [AlertReason.THRESHOLD_CROSSED]
    assert team.alerts[0].message.startswith("team search: day 2026-12-07: $55.00 of $100.00")
    # The next pass, the same spend: nothing again. Over the budget: 80 % and exceeded.
    again = plan_groups(BUDGETS, members, {team.group.key: team.sent}, DAY, MONTH)[0]
    assert again.alerts == []
    over = {Group(TEAM, "search"): [spend(70), spend(40)]}
    exceeded = plan_groups(BUDGETS, over, {team.group.key: team.sent}, DAY, MONTH)[0]
    assert [a.reason for a in exceeded.alerts] == [
        AlertReason.THRESHOLD_CROSSED, AlertReason.EXCEEDED,
    ]  # fmt: skip
    assert exceeded.state.state == "Exceeded"
    # A budgeted group without workloads has spent nothing (and says so).
    assert namespace.group == Group(NAMESPACE, "ml") and namespace.spend.month_to_date_usd == 0
    assert namespace.alerts == []


def test_group_budgets_are_checked_when_the_config_is_read() -> None:
    with pytest.raises(ValidationError, match="alertThresholds"):
        OperatorConfig.model_validate(
            {"budgets": {"teams": {"t": {"dailyUSD": 1, "alertThresholds": [0.8, 0.5]}}}}
        )
    with pytest.raises(ValidationError, match="monthlyUSD or dailyUSD"):
        OperatorConfig.model_validate({"budgets": {"namespaces": {"ml": {}}}})
    with pytest.raises(ValidationError):  # alert-only: there is nothing to enforce a team with
        OperatorConfig.model_validate(
            {"budgets": {"teams": {"t": {"dailyUSD": 1, "enforcement": "Suspend"}}}}
        )


def test_a_team_alert_carries_the_team_and_no_empty_labels() -> None:
    from datetime import UTC, datetime

    labels = {"team": "search", "scope": "team"}
    when = datetime(2026, 12, 7, tzinfo=UTC)
    alert = BudgetAlert("BudgetExceeded", f"day:{DAY}:exceeded", "team: over", "", "", when, labels)
    (body,) = alertmanager_payload([alert])
    assert body["labels"]["team"] == "search" and body["labels"]["scope"] == "team"
    assert "namespace" not in body["labels"] and "workload" not in body["labels"]
