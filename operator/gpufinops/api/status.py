"""``status``: what the operator observed and decided (observation, never intent)."""

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from gpufinops.api.base import StatusModel


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Condition types the operator sets (others may be added by later versions)."""

    READY = "Ready"
    INVALID_SPEC = "InvalidSpec"
    METRICS_AVAILABLE = "MetricsAvailable"
    PREDICTION_READY = "PredictionReady"
    BUDGET_EXCEEDED = "BudgetExceeded"


class Condition(StatusModel):
    """One aspect of the workload's state, following Kubernetes API conventions."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready, InvalidSpec.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024, description="CamelCase reason for the last transition, for machines."
    )
    message: str = Field(
        default="", max_length=32768, description="Human-readable details of the transition."
    )
    last_transition_time: datetime = Field(
        description="When the status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was set for."
    )


class ReplicasStatus(StatusModel):
    """Replica counts of the target, for Inference workloads."""

    current: int | None = Field(default=None, description="Replicas the target has now.")
    ready: int | None = Field(default=None, description="Replicas ready to serve.")
    desired: int | None = Field(
        default=None, description="Replicas the operator set (or would set, in Recommend mode)."
    )
    recommended: int | None = Field(
        default=None, description="Replicas the decision core recommends before step limits."
    )


class ForecastStatus(StatusModel):
    """The demand forecast behind the last decision."""

    demand_now: float | None = Field(
        default=None, description="Observed demand, requests per second."
    )
    predicted_peak: float | None = Field(
        default=None, description="Highest forecast demand within the lead window, requests/s."
    )
    lead_time_seconds: int | None = Field(default=None, description="Lead window used.")
    backtest_error: float | None = Field(
        default=None,
        description="Rolling forecast error relative to the seasonal-naive forecast "
        "(below 1 means the model beats it).",
    )
    last_fit_time: datetime | None = Field(
        default=None, description="When the model was last fitted."
    )


class PlacementStatus(StatusModel):
    """Where the workload's pods are placed."""

    pool: str | None = Field(default=None, description="Node pool in use.")
    capacity_type: str | None = Field(default=None, description="spot or on-demand.")
    interruptions: int | None = Field(default=None, description="Spot interruptions so far.")
    reason: str | None = Field(default=None, description="Why this pool was chosen.")


class CostStatus(StatusModel):
    """Spend of this workload in USD, over calendar periods."""

    hourly_usd: float | None = Field(
        default=None, alias="hourlyUSD", description="Current spend rate, USD per hour."
    )
    today_usd: float | None = Field(
        default=None, alias="todayUSD", description="Spend since midnight."
    )
    month_to_date_usd: float | None = Field(
        default=None, alias="monthToDateUSD", description="Spend since the month began."
    )
    projected_month_usd: float | None = Field(
        default=None, alias="projectedMonthUSD", description="Projected spend for the month."
    )
    last_accounted_time: datetime | None = Field(
        default=None, description="End of the last interval included in the totals."
    )


class BudgetState(StatusModel):
    """Position against the budget."""

    used_ratio: float | None = Field(
        default=None, description="Spend divided by the budget of the tightest period."
    )
    used_percent: int | None = Field(
        default=None, description="usedRatio as a whole percentage (for kubectl get)."
    )
    state: str | None = Field(
        default=None, description="WithinBudget, Warning, Exceeded or NoBudget."
    )


class Decision(StatusModel):
    """The last thing the operator decided, and why."""

    time: datetime = Field(description="When the decision was made.")
    action: str = Field(description="What was decided, e.g. ScaleUp, Hold, Place, Suspend.")
    reason: str = Field(description="Why, in words a person on call can act on.")


class TimedValue(StatusModel):
    """A value at a time (epoch seconds), e.g. one past recommendation."""

    time: float = Field(description="Epoch seconds.")
    value: int = Field(description="Replicas.")


class AutoscalerMemory(StatusModel):
    """What the autoscaler must remember across ticks and operator restarts."""

    recommendations: list[TimedValue] | None = Field(
        default=None, description="Recent recommendations, for the stabilization windows."
    )
    scale_ups: list[TimedValue] | None = Field(
        default=None, description="Recent scale-up sizes, for the scale-up step policies."
    )
    scale_downs: list[TimedValue] | None = Field(
        default=None, description="Recent scale-down sizes, for the scale-down step policies."
    )
    capacity_per_replica: float | None = Field(
        default=None, description="Learned requests per second one replica sustains."
    )
    consecutive_failures: int | None = Field(
        default=None, description="Metric reads failed in a row (for the fallback)."
    )
    last_active_time: float | None = Field(
        default=None, description="Epoch seconds when demand was last seen (scale to zero)."
    )


class AIWorkloadStatus(StatusModel):
    """Observed state of the workload, written by the operator only."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the status describes."
    )
    target: str | None = Field(
        default=None, description="The object this workload drives, as Kind/name."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Current conditions (Ready, InvalidSpec, MetricsAvailable, ...).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: ReplicasStatus | None = Field(default=None, description="Replica counts.")
    forecast: ForecastStatus | None = Field(default=None, description="Demand forecast.")
    placement: PlacementStatus | None = Field(default=None, description="Node pool placement.")
    cost: CostStatus | None = Field(default=None, description="Spend.")
    budget: BudgetState | None = Field(default=None, description="Budget position.")
    last_decision: Decision | None = Field(default=None, description="The latest decision.")
    selector: str | None = Field(
        default=None, description="Label selector of the target's pods (for the scale subresource)."
    )
    autoscaler: AutoscalerMemory | None = Field(
        default=None, description="Autoscaler memory that survives operator restarts."
    )
