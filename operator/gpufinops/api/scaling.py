"""Scaling behaviour with the HorizontalPodAutoscaler's vocabulary and semantics."""

from enum import StrEnum

from pydantic import Field

from gpufinops.api.base import ApiModel


class ScalingPolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingPolicy(ApiModel):
    """A limit on how much the replica count may change within a period (as in HPA)."""

    type: ScalingPolicyType = Field(
        description="Pods: change by at most `value` replicas per period. "
        "Percent: change by at most `value` percent of the current replicas per period."
    )
    value: int = Field(gt=0, description="Amount of change allowed per period; must be > 0.")
    period_seconds: int = Field(
        gt=0,
        le=1800,
        description="Length of the window the limit applies to, in seconds (1-1800).",
    )


class ScalingRules(ApiModel):
    """How fast one direction (up or down) may move."""

    stabilization_window_seconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Window over which past recommendations are considered (0-3600 s). "
        "Scale-down uses the highest recommendation in the window, scale-up the lowest, "
        "so short dips and spikes do not cause flapping. Defaults: 0 up, 300 down.",
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX,
        description="Which policy applies when several do: Max (the one allowing the most "
        "change), Min (the least), or Disabled (never scale in this direction).",
    )
    policies: list[ScalingPolicy] | None = Field(
        default=None,
        max_length=10,
        description="Step limits. Defaults as in HPA: up max(100 %, 4 pods) per 15 s; "
        "down 100 % per 15 s.",
    )


class Behavior(ApiModel):
    """Per-direction scaling behaviour, as in HPA's `behavior`."""

    scale_up: ScalingRules | None = Field(default=None, description="Rules for scaling up.")
    scale_down: ScalingRules | None = Field(default=None, description="Rules for scaling down.")
