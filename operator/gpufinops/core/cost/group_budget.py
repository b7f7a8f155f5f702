"""Budgets of a team or a namespace: the spend of their AIWorkloads together.

Organisations budget where people are accountable, a team or a namespace, more
often than per workload. A group's spend is the sum of its workloads' (as of
now); its state and alerts follow the workload rules of ``core.cost.budget``
(thresholds once per period, the projection re-armed below 90 %). Group budgets
alert only: what to throttle or suspend is a per-workload decision.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gpufinops.api.budget import Budget
from gpufinops.api.status import BudgetState
from gpufinops.config.model import GroupBudget, GroupBudgets
from gpufinops.core.cost.budget import Alert, Spend, alerts_due, budget_state, remember

TEAM, NAMESPACE = "team", "namespace"


@dataclass(frozen=True)
class Group:
    scope: str
    """``team`` or ``namespace``."""
    name: str

    @property
    def key(self) -> str:
        """How its alert memory is kept: ``team/search``."""
        return f"{self.scope}/{self.name}"


@dataclass(frozen=True)
class GroupPlan:
    group: Group
    spend: Spend
    state: BudgetState
    alerts: list[Alert]
    sent: tuple[str, ...]
    """The alert memory to keep (this period's keys)."""


def as_budget(budget: GroupBudget) -> Budget:
    return Budget.model_validate(
        {
            "monthlyUSD": budget.monthly_usd,
            "dailyUSD": budget.daily_usd,
            "alertThresholds": budget.alert_thresholds,
        }
    )


def total(spends: Iterable[Spend], day: str, month: str) -> Spend:
    """The group's spend: its workloads' summed, in the period of ``day`` and ``month``."""
    members = list(spends)
    return Spend(
        day,
        month,
        sum(s.today_usd for s in members),
        sum(s.month_to_date_usd for s in members),
        sum(s.projected_month_usd for s in members),
    )


def plan_groups(
    budgets: GroupBudgets,
    members: Mapping[Group, list[Spend]],
    sent: Mapping[str, tuple[str, ...]],
    day: str,
    month: str,
) -> list[GroupPlan]:
    """State and alerts due of every budgeted group (one without workloads spent $0)."""
    out = []
    for scope, configured in ((TEAM, budgets.teams), (NAMESPACE, budgets.namespaces)):
        for name, group_budget in sorted(configured.items()):
            group = Group(scope, name)
            budget = as_budget(group_budget)
            spend = total(members.get(group, []), day, month)
            before = sent.get(group.key, ())
            alerts = [
                Alert(a.reason, a.key, f"{scope} {name}: {a.message}")
                for a in alerts_due(budget, spend, before)
            ]
            kept = tuple(remember(before, alerts, spend, budget))
            out.append(GroupPlan(group, spend, budget_state(budget, spend), alerts, kept))
    return out
