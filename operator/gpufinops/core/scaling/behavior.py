"""HPA scaling behaviour: stabilisation windows and step policies.

This follows the HorizontalPodAutoscaler's algorithm so users' intuition
carries over: the recommendation is stabilised (scale-down takes the highest
recommendation in its window, scale-up the lowest in its), then limited by the
step policies measured from the replica count at the start of each period.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpufinops.api.scaling import Behavior, ScalingRules

TOLERANCE = 0.1
"""No change while the desired/current ratio is within 10 % of 1 (HPA's default)."""


@dataclass(frozen=True)
class Policy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    """One direction's rules with HPA defaults filled in."""

    window_seconds: int
    select: str  # "Max", "Min" or "Disabled"
    policies: tuple[Policy, ...]

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)


DEFAULT_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class ResolvedBehavior:
    up: Rules
    down: Rules

    @property
    def history_seconds(self) -> int:
        """How long recommendations and scale events must be remembered."""
        return max(
            self.up.window_seconds,
            self.down.window_seconds,
            self.up.longest_period,
            self.down.longest_period,
        )


def _resolve(rules: ScalingRules | None, default: Rules) -> Rules:
    if rules is None:
        return default
    window = (
        default.window_seconds
        if rules.stabilization_window_seconds is None
        else rules.stabilization_window_seconds
    )
    policies = (
        default.policies
        if rules.policies is None
        else tuple(Policy(str(p.type), p.value, p.period_seconds) for p in rules.policies)
    )
    return Rules(window, str(rules.select_policy), policies)


def resolve_behavior(behavior: Behavior | None) -> ResolvedBehavior:
    """Fill the user's behaviour with HPA defaults, field by field."""
    if behavior is None:
        return ResolvedBehavior(DEFAULT_UP, DEFAULT_DOWN)
    return ResolvedBehavior(
        _resolve(behavior.scale_up, DEFAULT_UP), _resolve(behavior.scale_down, DEFAULT_DOWN)
    )


@dataclass(frozen=True)
class Sample:
    """A recommendation, or a scale event's size, at a time (epoch seconds)."""

    time: float
    value: int


def stabilize(
    recommendation: int,
    current: int,
    history: Sequence[Sample],
    behavior: ResolvedBehavior,
    now: float,
) -> int:
    """Apply both stabilisation windows to ``recommendation`` (HPA semantics)."""
    up = recommendation
    down = recommendation
    up_cutoff = now - behavior.up.window_seconds
    down_cutoff = now - behavior.down.window_seconds
    for sample in history:
        if sample.time > up_cutoff:
            up = min(up, sample.value)
        if sample.time > down_cutoff:
            down = max(down, sample.value)
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    return result


def _change_in_period(events: Sequence[Sample], period: int, now: float) -> int:
    return sum(e.value for e in events if e.time > now - period)


def scale_up_limit(current: int, ups: Sequence[Sample], rules: Rules, now: float) -> int:
    """Most replicas the step policies allow now (``ups``: past scale-up sizes)."""
    if rules.select == "Disabled" or not rules.policies:
        return current
    limits = []
    for p in rules.policies:
        start = current - _change_in_period(ups, p.period_seconds, now)
        if p.kind == "Pods":
            limits.append(start + p.value)
        else:
            limits.append(math.ceil(start * (1 + p.value / 100)))
    return max(limits) if rules.select == "Max" else min(limits)


def scale_down_limit(current: int, downs: Sequence[Sample], rules: Rules, now: float) -> int:
    """Fewest replicas the step policies allow now (``downs``: past scale-down sizes)."""
    if rules.select == "Disabled" or not rules.policies:
        return current
    limits = []
    for p in rules.policies:
        start = current + _change_in_period(downs, p.period_seconds, now)
        if p.kind == "Pods":
            limits.append(start - p.value)
        else:
            limits.append(math.ceil(start * (1 - p.value / 100)))
    return min(limits) if rules.select == "Max" else max(limits)
