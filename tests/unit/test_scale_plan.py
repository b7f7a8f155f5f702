"""The step after the decision, shared by the operator and the simulator: a person's count
overrides the decision, the budget's ceiling binds both, and the Event says which."""

from gpufinops.core.events import EventReason
from gpufinops.core.scaling.decide import Decision, ScalingState
from gpufinops.core.scaling.plan import plan_scale


def _decision(desired: int, action: str = "ScaleUp") -> Decision:
    return Decision(
        desired=desired, recommended=desired, reactive=desired, predictive=None,
        action=action, reason="queue 40 above 5", metrics_available=True,
        fallback_active=False, state=ScalingState(),
    )  # fmt: skip


def test_without_a_person_or_a_budget_the_plan_is_the_decision() -> None:
    plan = plan_scale(_decision(6))
    assert (plan.desired, plan.action, plan.event_reason) == (6, "ScaleUp", EventReason.SCALED_UP)
    assert plan_scale(_decision(0, "ScaleToZero")).event_reason == EventReason.SCALED_TO_ZERO
    assert plan_scale(_decision(3, "Hold")).event_reason == EventReason.SCALED


def test_a_persons_count_overrides_and_the_budget_caps_it() -> None:
    manual = plan_scale(_decision(6), manual_replicas=2)
    assert (manual.desired, manual.action) == (2, "ManualOverride")
    assert manual.event_reason == EventReason.SCALED_MANUALLY
    capped = plan_scale(_decision(6), manual_replicas=9, ceiling=(4, "BudgetThrottle"))
    assert (capped.desired, capped.action) == (4, "BudgetThrottle")
    assert capped.reason.startswith("budget exceeded, BudgetThrottle: replicas capped at 4")
    pending = plan_scale(_decision(6), ceiling=(2, "BudgetPending"))
    assert pending.desired == 2 and pending.reason.startswith("budget not decided yet")
    # A ceiling above the count binds nothing.
    assert plan_scale(_decision(3), ceiling=(4, "BudgetThrottle")).action == "ScaleUp"
    suspended = plan_scale(_decision(3), ceiling=(0, "BudgetSuspend"))
    assert suspended.event_reason == EventReason.BUDGET_SUSPENDED
