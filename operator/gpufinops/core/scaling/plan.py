"""What a tick does after the decision: a person's count and the budget's ceiling
applied to it, and the Event that says so, as one plan the controller carries out.

The decision (``decide``) is what the signals ask for. ``spec.replicas`` (``kubectl
scale aiw``) overrides it, and the budget's ceiling binds both: scaling the workload
is open to whoever may edit it, its budget is an admin's. The operator and the
simulator both plan this way, so the simulated core is the shipped one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpufinops.core.events import EventReason
from gpufinops.core.scaling.decide import Decision

SCALED_EVENTS = {
    "ScaleUp": EventReason.SCALED_UP,
    "ScaleDown": EventReason.SCALED_DOWN,
    "ScaleToZero": EventReason.SCALED_TO_ZERO,
    "Wake": EventReason.SCALED_UP,
    "Fallback": EventReason.FALLBACK_SCALED,
    "ManualOverride": EventReason.SCALED_MANUALLY,
    "BudgetSuspend": EventReason.BUDGET_SUSPENDED,
}
"""Event reason of a scale by the action behind it (``Scaled`` for any other)."""


@dataclass(frozen=True)
class ScalePlan:
    desired: int
    action: str
    reason: str

    @property
    def event_reason(self) -> EventReason:
        """The Event posted when this plan changes the replicas."""
        return SCALED_EVENTS.get(self.action, EventReason.SCALED)


def plan_scale(
    decision: Decision,
    *,
    manual_replicas: int | None = None,
    ceiling: tuple[int, str] | None = None,
) -> ScalePlan:
    """The replicas to set: the decision, or ``manual_replicas`` when a person set them,
    capped by the budget's ``ceiling`` (replicas, action) when there is one."""
    desired, action, reason = decision.desired, decision.action, decision.reason
    if manual_replicas is not None:
        desired, action = manual_replicas, "ManualOverride"
        reason = f"spec.replicas={manual_replicas} set (kubectl scale); autoscaling paused"
    if ceiling is not None and desired > ceiling[0]:
        desired, action = ceiling
        why = (
            "budget not decided yet (the cost loop's first pass on this workload)"
            if action == "BudgetPending"
            else "budget exceeded"
        )
        reason = f"{why}, {action}: replicas capped at {desired} ({reason})"
    return ScalePlan(desired, action, reason)
