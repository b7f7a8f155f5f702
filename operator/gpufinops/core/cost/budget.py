"""Budgets: which alerts to raise now, the position against the budget, and enforcement.

Alerts are remembered by period (``month:2026-11:0.8``), so each fires once per
threshold per period, and a new period starts with no memory: the budget
resets by construction instead of by a job that can fail to run.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from math import floor
from typing import Any
from zoneinfo import ZoneInfo

from gpufinops.api.budget import Budget, Enforcement
from gpufinops.api.spec import AIWorkloadSpec, WorkloadType
from gpufinops.api.status import BudgetState
from gpufinops.core.cost.accounting import CostTotals, as_of, project_month, reading_time
from gpufinops.core.cost.periods import day_id, month_id


class AlertReason(StrEnum):
    THRESHOLD_CROSSED = "BudgetThresholdCrossed"
    PROJECTED_TO_EXCEED = "BudgetProjectedToExceed"
    EXCEEDED = "BudgetExceeded"


class State(StrEnum):
    WITHIN_BUDGET = "WithinBudget"
    WARNING = "Warning"
    EXCEEDED = "Exceeded"
    NO_BUDGET = "NoBudget"


@dataclass(frozen=True)
class Spend:
    """Spend of one workload in the current day and month, as of ``now``."""

    day: str
    month: str
    today_usd: float
    month_to_date_usd: float
    projected_month_usd: float

    @classmethod
    def of(cls, totals: CostTotals, now: datetime, tz: ZoneInfo) -> "Spend":
        """As of ``now``, or of the last accounting when the clock stepped back before it."""
        now = reading_time(totals, now)
        seen = as_of(totals, now, tz)
        return cls(
            day_id(now, tz),
            month_id(now, tz),
            seen.today_usd,
            seen.month_to_date_usd,
            project_month(totals, now, tz),
        )


@dataclass(frozen=True)
class Alert:
    """One alert to emit as an Event (and to Alertmanager or a webhook)."""

    reason: AlertReason
    key: str
    """Memory key, ``<period>:<id>:<threshold|projected|exceeded>``."""
    message: str


def _limits(budget: Budget, spend: Spend) -> list[tuple[str, str, float, float]]:
    """(period, id, spent, limit) of every period the budget limits."""
    out = []
    if budget.daily_usd is not None:
        out.append(("day", spend.day, spend.today_usd, budget.daily_usd))
    if budget.monthly_usd is not None:
        out.append(("month", spend.month, spend.month_to_date_usd, budget.monthly_usd))
    return out


def _ratio(spent: float, limit: float) -> float:
    if limit > 0:
        return spent / limit
    return float("inf") if spent > 0 else 0.0


def used_ratio(budget: Budget, spend: Spend) -> float:
    """Spend over the budget of the tightest period (the highest ratio)."""
    return max(_ratio(spent, limit) for _, _, spent, limit in _limits(budget, spend))


def _projected_over(budget: Budget, spend: Spend) -> bool:
    return budget.monthly_usd is not None and spend.projected_month_usd > budget.monthly_usd


def alerts_due(budget: Budget, spend: Spend, sent: Iterable[str]) -> list[Alert]:
    """Alerts not yet raised in this period.

    A threshold of exactly 1.0 is reported as BudgetExceeded alone, not twice;
    the projection alert is skipped once the month is already exceeded.
    """
    done = set(sent)
    out = []
    for period, pid, spent, limit in _limits(budget, spend):
        ratio = _ratio(spent, limit)
        where = f"{period} {pid}: ${spent:.2f} of ${limit:.2f}"
        for t in budget.alert_thresholds:
            key = f"{period}:{pid}:{t:g}"
            if ratio >= t and t != 1.0 and key not in done:
                msg = f"{where} ({ratio:.0%}) crossed the {t:.0%} alert threshold"
                out.append(Alert(AlertReason.THRESHOLD_CROSSED, key, msg))
        key = f"{period}:{pid}:exceeded"
        if ratio >= 1.0 and key not in done:
            out.append(Alert(AlertReason.EXCEEDED, key, f"{where}: budget exceeded"))
    key = f"month:{spend.month}:projected"
    exceeded = budget.monthly_usd is not None and spend.month_to_date_usd >= budget.monthly_usd
    if _projected_over(budget, spend) and not exceeded and key not in done:
        msg = (
            f"month {spend.month}: projected ${spend.projected_month_usd:.2f} exceeds the "
            f"${budget.monthly_usd:.2f} budget"
        )
        out.append(Alert(AlertReason.PROJECTED_TO_EXCEED, key, msg))
    return out


PROJECTION_REARM = 0.9
"""A projection that falls below this share of the monthly budget re-arms its alert:
a projection back under the budget that crosses it again alerts again, and one
wavering around the budget does not alert on every pass."""


def remember(
    sent: Iterable[str], alerts: Iterable[Alert], spend: Spend, budget: Budget | None = None
) -> list[str]:
    """The memory to persist: this period's keys only, so old periods drop out; the
    projection's key is forgotten once the projection is well back under the budget."""
    current = {f"day:{spend.day}", f"month:{spend.month}"}
    keys = set(sent) | {a.key for a in alerts}
    monthly = budget.monthly_usd if budget is not None else None
    if monthly is not None and spend.projected_month_usd < PROJECTION_REARM * monthly:
        keys.discard(f"month:{spend.month}:projected")
    return sorted(k for k in keys if k.rsplit(":", 1)[0] in current)


def budget_state(budget: Budget | None, spend: Spend) -> BudgetState:
    """``status.budget``: Warning from the highest threshold below 100 % or a bad projection."""
    if budget is None:
        return BudgetState(state=State.NO_BUDGET)
    ratio = used_ratio(budget, spend)
    warn_at = max((t for t in budget.alert_thresholds if t < 1.0), default=float("inf"))
    if ratio >= 1.0:
        state = State.EXCEEDED
    elif ratio >= warn_at or _projected_over(budget, spend):
        state = State.WARNING
    else:
        state = State.WITHIN_BUDGET
    finite = min(ratio, 1e6)
    return BudgetState(used_ratio=round(finite, 4), used_percent=floor(finite * 100), state=state)


class Action(StrEnum):
    NONE = "None"
    THROTTLE = "Throttle"
    SUSPEND = "Suspend"


@dataclass(frozen=True)
class EnforcementDecision:
    """What the budget allows the workload to do now."""

    action: Action
    max_replicas: int | None
    """Ceiling on replicas (Throttle: current, Suspend: 0); None means no ceiling."""
    reason: str


def enforce(spec: AIWorkloadSpec, state: BudgetState, current_replicas: int) -> EnforcementDecision:
    """The enforcement the budget calls for; nothing unless the budget is exceeded.

    Suspend never stops an Inference workload without ``suspendInference``: a
    dropped service costs more than a budget overrun, so it falls back to
    Throttle. Throttle never goes below minReplicas.
    """
    budget = spec.budget
    if budget is None or state.state != State.EXCEEDED:
        return EnforcementDecision(Action.NONE, None, "within budget")
    floor_ = spec.inference.min_replicas if spec.inference is not None else 0
    held = max(current_replicas, floor_)
    throttle = EnforcementDecision(
        Action.THROTTLE, held, f"budget exceeded: scale-up capped at {held} replicas"
    )
    if budget.enforcement == Enforcement.ALERT:
        return EnforcementDecision(Action.NONE, None, "budget exceeded: enforcement is Alert")
    if budget.enforcement == Enforcement.THROTTLE:
        return throttle
    if spec.type == WorkloadType.INFERENCE and not budget.suspend_inference:
        return EnforcementDecision(
            Action.THROTTLE,
            held,
            f"budget exceeded: Suspend needs suspendInference on Inference; capped at {held}",
        )
    return EnforcementDecision(Action.SUSPEND, 0, "budget exceeded: workload suspended")


def recorded_enforcement(status: Mapping[str, Any] | None) -> Action | None:
    """The enforcement the cost loop last recorded in ``status.budget.enforcement``.

    None when none is recorded yet (the cost loop has not decided this workload) or
    the value is not one this version writes: every loop that obeys a budget reads
    it through here, so all of them read the same thing the same way.
    """
    budget = (status or {}).get("budget")
    value = budget.get("enforcement") if isinstance(budget, Mapping) else None
    try:
        return Action(value) if isinstance(value, str) else None
    except ValueError:
        return None


def replica_ceiling(
    action: Action | None, has_budget: bool, min_replicas: int, current: int
) -> tuple[int, str] | None:
    """The ceiling on an autoscaler's replicas from the enforcement the cost loop recorded.

    Throttle holds the replicas running now (never below the floor): the service
    keeps serving, it only stops growing. Suspend reaches Inference only with the
    workload's explicit suspendInference consent (``enforce`` checks). A workload
    with a budget and no decision recorded yet (just created, or deleted and created
    again over a month already overspent: the ledger outlives the object), or with
    one this version does not know, is held as Throttle holds it until the cost loop
    has decided: growing first would spend before the budget is looked at.
    """
    if action == Action.THROTTLE:
        return max(current, min_replicas), "BudgetThrottle"
    if action == Action.SUSPEND:
        return 0, "BudgetSuspend"
    if action is None and has_budget:
        return max(current, min_replicas), "BudgetPending"
    return None
