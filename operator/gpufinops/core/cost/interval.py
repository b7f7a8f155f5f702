"""One workload's cost pass as a plan: what the interval cost, the totals after it,
the budget's position, the alerts due and the enforcement.

The controller gathers the holdings (which pods, on which pools, for how long) and
the replicas running, calls ``plan_interval`` once, and writes what it returns
(``status.cost``, ``status.budget``, the ledger entry) and sends the alerts.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.api.status import BudgetState
from gpufinops.core.cost.accounting import (
    Charge,
    CostTotals,
    Footprint,
    Holding,
    account,
    charge,
    to_status,
)
from gpufinops.core.cost.budget import (
    Alert,
    EnforcementDecision,
    Spend,
    alerts_due,
    budget_state,
    enforce,
    remember,
)


@dataclass(frozen=True)
class IntervalPlan:
    spent: Charge
    totals: CostTotals
    state: BudgetState
    alerts: list[Alert]
    """Alerts due now (each period and threshold once: ``sent`` remembers them)."""
    sent: tuple[str, ...]
    enforcement: EnforcementDecision
    spend: Spend
    """Today, the month and its projection after the interval: what team and namespace
    budgets sum."""

    def status_patch(self, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
        """``status.cost`` and ``status.budget`` as written."""
        state, decision = self.state, self.enforcement
        return {
            "cost": to_status(self.totals, now, tz).to_wire(),
            "budget": {
                "usedRatio": state.used_ratio,
                "usedPercent": state.used_percent,
                "state": state.state,
                "enforcement": decision.action.value,
                "maxReplicas": decision.max_replicas,
                "message": decision.reason,
                "alertsSent": list(self.sent),
            },
        }


def plan_interval(
    spec: AIWorkloadSpec,
    totals: CostTotals,
    sent: Iterable[str],
    holdings: Iterable[Holding],
    start: datetime,
    now: datetime,
    current_replicas: int,
    *,
    prices: Mapping[str, float],
    capacity_types: Mapping[str, str],
    tz: ZoneInfo,
    footprint: Footprint | None = None,
) -> IntervalPlan:
    """Price ``[start, now)`` (and its energy and emissions, with ``footprint``), accrue
    it, and decide the budget from the new totals."""
    spent = charge(holdings, prices, capacity_types, footprint)
    after = account(totals, start, now, spent, tz)
    spend = Spend.of(after, now, tz)
    budget = spec.budget
    state = budget_state(budget, spend)
    before = tuple(sent)
    alerts = alerts_due(budget, spend, before) if budget is not None else []
    remembered = tuple(remember(before, alerts, spend, budget)) if budget is not None else ()
    return IntervalPlan(
        spent, after, state, alerts, remembered, enforce(spec, state, current_replicas), spend
    )
