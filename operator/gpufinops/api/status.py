"""``status``: what the operator observed and decided (observation, never intent)."""

from datetime import datetime
from enum import StrEnum
from typing import Any

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
    PAUSED = "Paused"
    FALLBACK = "Fallback"


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


class PoolFailure(StatusModel):
    """A pool that recently failed to provide capacity; skipped for a while."""

    pool: str = Field(max_length=63, description="Node pool name.")
    time: datetime = Field(description="When it failed to provide capacity.")


class PlacementStatus(StatusModel):
    """Where the workload's pods are placed, and how that has gone (Training)."""

    job: str | None = Field(default=None, description="Name of the Job being placed.")
    phase: str | None = Field(
        default=None,
        description="Waiting (not placed yet), Running, FallingBack (suspended to move to "
        "on-demand), Suspended (budget), Succeeded or Failed.",
    )
    pool: str | None = Field(default=None, description="Node pool in use.")
    capacity_type: str | None = Field(default=None, description="spot or on-demand.")
    reason: str | None = Field(default=None, description="Why this pool was chosen.")
    placed_at: datetime | None = Field(default=None, description="When the Job last started.")
    not_before: datetime | None = Field(
        default=None, description="Waiting for a start window that opens at this time."
    )
    attempts: int | None = Field(default=None, description="Placements so far.")
    interruptions: int | None = Field(default=None, description="Spot interruptions so far.")
    interruptions_by_reason: dict[str, int] | None = Field(
        default=None,
        json_schema_extra={
            "additionalProperties": {
                "type": "integer",
                "description": "Interruptions seen this way.",
            }
        },
        description="Interruptions counted by how they were seen (SpotInterruptionNotice, "
        "KarpenterDisruption, DisruptionTarget, NodeDeleted, ...).",
    )
    interrupted_pods: list[str] | None = Field(
        default=None,
        max_length=64,
        description="UIDs of the pods already counted as interrupted (the most recent).",
    )
    on_demand_only: bool | None = Field(
        default=None, description="The job fell back and stays on on-demand capacity."
    )
    fallback_reason: str | None = Field(
        default=None, description="PendingTimeout, MaxInterruptions or DeadlineAtRisk."
    )
    pending_since: datetime | None = Field(
        default=None, description="Since when the Job's pods have been unschedulable."
    )
    unavailable_pools: list[PoolFailure] | None = Field(
        default=None, description="Pools that recently failed to provide capacity."
    )
    progress_seconds: float | None = Field(
        default=None, description="Checkpointed work, in seconds of uninterrupted run time."
    )
    cost_to_finish_usd: float | None = Field(
        default=None,
        alias="costToFinishUSD",
        description="Expected cost to finish on the current pool, USD.",
    )
    cost_to_finish_on_demand_usd: float | None = Field(
        default=None,
        alias="costToFinishOnDemandUSD",
        description="Expected cost to finish on on-demand capacity, USD.",
    )
    deadline_at_risk: bool | None = Field(
        default=None, description="The expected finish is after spec.training.deadline."
    )
    expected_finish: datetime | None = Field(
        default=None, description="When the Job is expected to finish at the current pace."
    )


class SpotPoolStatus(StatusModel):
    """One spot pool of ``spec.inference.spot``: its replicas now and its record."""

    name: str = Field(max_length=63, description="Node pool name.")
    replicas: int | None = Field(default=None, description="Replicas asked of the pool's child.")
    ready: int | None = Field(default=None, description="Replicas ready there.")
    starting: int | None = Field(default=None, description="Scheduled, not ready yet.")
    pending: int | None = Field(default=None, description="Not scheduled.")
    noticed: int | None = Field(
        default=None, description="Replicas on nodes under an interruption notice, being drained."
    )
    preemptions: int | None = Field(
        default=None, description="Preemption events remembered (the last 7 days)."
    )
    preemption_times: list[datetime] | None = Field(
        default=None, max_length=50, description="When those preemptions were seen."
    )
    watched_since: datetime | None = Field(
        default=None, description="Since when the workload runs replicas there (the rate's base)."
    )
    unavailable_until: datetime | None = Field(
        default=None, description="Until when the pool gets no new replicas."
    )
    reason: str | None = Field(
        default=None, description="Why it is avoided: Interrupted or NoCapacity."
    )


class OnDemandStatus(StatusModel):
    """The target's share of a workload with spot replicas."""

    replicas: int | None = Field(default=None, description="Replicas of the target.")
    ready: int | None = Field(default=None, description="Of them ready.")
    base: int | None = Field(default=None, description="The on-demand base kept always.")
    fallback: int | None = Field(
        default=None, description="On-demand replicas standing in for spot ones not serving."
    )


class SpotStatus(StatusModel):
    """Where the replicas of ``spec.inference.spot`` run (the operator's memory of it)."""

    desired_replicas: int | None = Field(
        default=None, description="Replicas the service needs, as last split over the classes."
    )
    on_demand: OnDemandStatus | None = Field(default=None, description="The target's share.")
    extra_replicas: int | None = Field(
        default=None, description="Spot replicas over the need (over-provisioning)."
    )
    pools: list[SpotPoolStatus] | None = Field(
        default=None, max_length=8, description="Each spot pool."
    )


class DailyCost(StatusModel):
    """One day's spend on one capacity type (days of the cost time zone)."""

    date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="The day, YYYY-MM-DD.")
    capacity_type: str = Field(description="on-demand, spot, or the pool's capacityType.")
    usd: float = Field(alias="costUSD", description="Spend of the day on that capacity type.")
    gpu_hours: float = Field(description="GPU-hours held that day on that capacity type.")
    kwh: float | None = Field(
        default=None, alias="kWh", description="Energy of those GPU-hours (pools with power set)."
    )
    kg_co2e: float | None = Field(
        default=None, alias="kgCO2e", description="Its emissions (pools with grid intensity set)."
    )


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
        default=None,
        alias="projectedMonthUSD",
        description="Projected spend for the month: so far, plus the mean day of the last "
        "week for each day left (the current rate for a workload with fewer than three days).",
    )
    total_usd: float | None = Field(
        default=None,
        alias="totalUSD",
        description="Spend since the workload was first accounted (a Training run's cost).",
    )
    last_accounted_time: datetime | None = Field(
        default=None, description="End of the last interval included in the totals."
    )
    month_to_date_kwh: float | None = Field(
        default=None,
        alias="monthToDateKWh",
        description="GPU energy since the month began, kWh (pools with gpuPowerWatts set).",
    )
    month_to_date_kg_co2e: float | None = Field(
        default=None,
        alias="monthToDateKgCO2e",
        description="Its emissions, kgCO2e (pools with gridIntensityGramsPerKWh set too).",
    )
    daily: list[DailyCost] | None = Field(
        default=None,
        max_length=62 * 4,
        description="Spend per day and capacity type, this month and the previous one "
        "(what `gpufinops report --format focus` exports).",
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
    enforcement: str | None = Field(
        default=None,
        description="What the budget enforces now: None, Throttle (no scale-up beyond the "
        "current replicas, never below minReplicas) or Suspend (the Training handler suspends "
        "the Job; Inference scales to zero only with suspendInference).",
    )
    max_replicas: int | None = Field(
        default=None, description="Replica ceiling while Throttle or Suspend is enforced."
    )
    message: str | None = Field(default=None, description="Why, in words.")
    alerts_sent: list[str] | None = Field(
        default=None,
        max_length=64,
        description="Alerts already raised in the current day and month, as "
        "<day|month>:<period>:<threshold|exceeded|projected> keys (each fires once).",
    )


class Recommendation(StatusModel):
    """A change that would cost less, with its estimated saving (never applied)."""

    kind: str = Field(
        max_length=63, description="FewerReplicas, SmallerGPU, UseSpot or AddSchedule."
    )
    message: str = Field(max_length=1024, description="What was observed and what to change.")
    estimated_monthly_saving_usd: float = Field(
        alias="estimatedMonthlySavingUSD",
        ge=0,
        description="Estimated saving per 730-hour month, USD (alternatives, not additive).",
    )


SPEND_HISTORY_HOURS = 8 * 24
"""A week of baselines for the same hour, and the day being judged."""


def _hourly(description: str) -> Any:
    return Field(default_factory=list, max_length=SPEND_HISTORY_HOURS, description=description)


class SpendHistory(StatusModel):
    """This workload's spend hour by hour over the past 8 days (UTC hours from
    firstHour, one value per hour in each list): what spend anomalies are judged
    against, kept so a restarted operator does not need a week to judge again."""

    first_hour: str | None = Field(
        default=None,
        alias="firstHour",
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00Z$",
        description="The UTC hour the lists start at, e.g. 2026-12-07T02:00Z.",
    )
    recorded_until: datetime | None = Field(
        default=None,
        alias="recordedUntil",
        description="The instant the hours are recorded up to: a restarted operator "
        "records from there, from the pods' own start and end times.",
    )
    observed_hours: list[float] = _hourly(
        "How much of each hour was accounted (0: not observed, 1: all of it)."
    )
    usd: list[float] = _hourly("Spend in each hour, USD.")
    gpu_hours: list[float] = _hourly("GPU-hours held in each hour.")
    replica_hours: list[float] = _hourly("Replica-hours in each hour.")
    desired_replica_hours: list[float] | None = Field(
        default=None,
        max_length=SPEND_HISTORY_HOURS,
        description="Replica-hours the autoscaler asked for in each hour (Inference).",
    )
    tokens: list[float] = _hourly(
        "Tokens served in each hour (prompt and generated; 0 where not counted)."
    )
    usd_by_pool: dict[str, list[float]] = Field(
        default_factory=dict,
        alias="usdByPool",
        max_length=8,
        description="Spend in each hour per node pool (the 8 largest over the history).",
        json_schema_extra={
            "additionalProperties": {
                "type": "array",
                "items": {"type": "number"},
                "maxItems": SPEND_HISTORY_HOURS,
                "description": "USD in each hour on that pool.",
            }
        },
    )


def _hours_of_day(description: str) -> Any:
    return Field(min_length=24, max_length=24, description=description)


class ObservedUsage(StatusModel):
    """What the rightsizing recommendations are based on, by local hour of day, kept so a
    restarted operator goes on from it instead of observing a day again."""

    observed_since: datetime | None = Field(
        default=None, description="Start of the first interval observed."
    )
    observed_until: datetime | None = Field(
        default=None, description="End of the last interval observed."
    )
    observed_hours: list[float] = _hours_of_day(
        "Hours observed in each local hour of the day (index 0 is 00:00-01:00)."
    )
    gpu_hours: list[float] = _hours_of_day("GPU-hours held in each local hour of the day.")
    replica_hours: list[float] = _hours_of_day("Replica-hours in each local hour of the day.")
    peak_replicas: int = Field(default=0, ge=0, description="The most replicas seen.")
    gpus_per_replica: float = Field(
        default=0.0, ge=0, description="The most GPUs one replica held."
    )
    gpu_hours_by_pool: dict[str, float] = Field(
        default_factory=dict,
        max_length=16,
        description="GPU-hours held per node pool (the 16 largest).",
        json_schema_extra={
            "additionalProperties": {"type": "number", "description": "GPU-hours on that pool."}
        },
    )
    peak_utilization_percent: float | None = Field(
        default=None, description="Peak GPU utilisation over the observed time (DCGM)."
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


class PlannedHeadroom(StatusModel):
    """The headroom one recent tick planned with, until its replicas could be ready."""

    time: float = Field(description="Epoch seconds of the tick.")
    headroom: float = Field(description="Planned capacity / planned demand (at least 1).")


class HeadroomMemory(StatusModel):
    """The calibrated headroom's record: how much spare capacity recent moments needed."""

    counts: list[float] | None = Field(
        default=None,
        description="Demand-weighted, decayed histogram of the headroom past moments "
        "needed: bin 0 holds needs up to 1, bin i those in (1.02^(i-1), 1.02^i].",
    )
    scored: float | None = Field(default=None, description="Scored moments, decayed.")
    updated: float | None = Field(
        default=None, description="Epoch seconds the counts were last decayed to."
    )
    pending: list[PlannedHeadroom] | None = Field(
        default=None, description="Headroom of the ticks within the last start-up lead."
    )


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
    headroom: HeadroomMemory | None = Field(
        default=None,
        description="The calibrated headroom's record, so a restart keeps the margin it learned.",
    )


class SandboxStatus(StatusModel):
    """The shutdown timers of an Experiment sandbox."""

    active_since: datetime | None = Field(
        default=None,
        description="Start of the lifetime: creation, or the last time the user woke it.",
    )
    idle_since: datetime | None = Field(
        default=None, description="Since when it has been idle (None: it is not)."
    )
    shut_down_at: datetime | None = Field(
        default=None, description="When the operator scaled it to zero or suspended it."
    )
    shutdown_reason: str | None = Field(
        default=None, description="MaxLifetime or Idle (with the details in lastDecision)."
    )
    replicas_before: int | None = Field(
        default=None, description="Replicas it had before the shutdown (to tell the user)."
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
    spot: SpotStatus | None = Field(
        default=None, description="Spot replicas of an Inference workload (spec.inference.spot)."
    )
    sandbox: SandboxStatus | None = Field(
        default=None, description="Idle and lifetime timers (Experiment)."
    )
    cost: CostStatus | None = Field(default=None, description="Spend.")
    budget: BudgetState | None = Field(default=None, description="Budget position.")
    recommendations: list[Recommendation] | None = Field(
        default=None,
        max_length=10,
        description="Rightsizing recommendations with estimated monthly savings, largest "
        "first (written by the cost loop; see docs/cost.md).",
    )
    observed_usage: ObservedUsage | None = Field(
        default=None, description="The observations the recommendations are based on."
    )
    spend_history: SpendHistory | None = Field(
        default=None,
        alias="spendHistory",
        description="Hourly spend of the past 8 days, what spend anomalies are judged against.",
    )
    last_decision: Decision | None = Field(default=None, description="The latest decision.")
    selector: str | None = Field(
        default=None, description="Label selector of the target's pods (for the scale subresource)."
    )
    autoscaler: AutoscalerMemory | None = Field(
        default=None, description="Autoscaler memory that survives operator restarts."
    )
