"""Every Event reason the operator posts, in one enum.

Posting interfaces take an ``EventReason``, so a reason that is not listed here does
not type-check; docs/metrics-and-events.md documents each member (a test compares
the two). Values are the ``reason`` field of the Kubernetes Event, in the
UpperCamelCase the API conventions ask for.
"""

from dataclasses import dataclass
from enum import StrEnum


class EventReason(StrEnum):
    ACCEPTED = "Accepted"
    AUTOSCALING_PAUSED = "AutoscalingPaused"
    AUTOSCALING_RESUMED = "AutoscalingResumed"
    BUDGET_EXCEEDED = "BudgetExceeded"
    BUDGET_NOT_ENFORCED = "BudgetNotEnforced"
    BUDGET_PROJECTED_TO_EXCEED = "BudgetProjectedToExceed"
    BUDGET_SUSPENDED = "BudgetSuspended"
    BUDGET_THRESHOLD_CROSSED = "BudgetThresholdCrossed"
    CONFLICTING_AUTOSCALER = "ConflictingAutoscaler"
    COST_STATUS_CORRECTED = "CostStatusCorrected"
    DEADLINE_AT_RISK = "DeadlineAtRisk"
    DRAINING = "Draining"
    FALLBACK_ACTIVATED = "FallbackActivated"
    FALLBACK_DISABLED = "FallbackDisabled"
    FALLBACK_SCALED = "FallbackScaled"
    FALLING_BACK_TO_ON_DEMAND = "FallingBackToOnDemand"
    FELL_BACK_TO_ON_DEMAND = "FellBackToOnDemand"
    IDLE_DETECTED = "IdleDetected"
    IDLE_SHUTDOWN_BLOCKED = "IdleShutdownBlocked"
    IDLE_SHUTDOWN_DRY_RUN = "IdleShutdownDryRun"
    INTERRUPTIONS_COUNT_AS_FAILURES = "InterruptionsCountAsFailures"
    INVALID_SPEC = "InvalidSpec"
    JOB_CREATED = "JobCreated"
    JOB_FAILED = "JobFailed"
    JOB_NAME_TAKEN = "JobNameTaken"
    JOB_NOT_FOUND = "JobNotFound"
    JOB_NOT_SUSPENDED = "JobNotSuspended"
    JOB_SUCCEEDED = "JobSucceeded"
    MANAGED_BY_KUEUE = "ManagedByKueue"
    MOVING_TO_SPOT = "MovingToSpot"
    METRICS_AVAILABLE = "MetricsAvailable"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    NO_POOL_AVAILABLE = "NoPoolAvailable"
    ON_DEMAND_PLACED = "OnDemandPlaced"
    PREDICTION_NOT_READY = "PredictionNotReady"
    PREDICTION_READY = "PredictionReady"
    RECOMMENDATION = "Recommendation"
    SANDBOX_SHUT_DOWN = "SandboxShutDown"
    SANDBOX_WOKEN = "SandboxWoken"
    SCALED = "Scaled"
    SCALED_DOWN = "ScaledDown"
    SCALED_MANUALLY = "ScaledManually"
    SCALED_TO_ZERO = "ScaledToZero"
    SCALED_UP = "ScaledUp"
    SHUT_DOWN = "ShutDown"
    SHUTDOWN_ABORTED = "ShutdownAborted"
    SHUTDOWN_REFUSED = "ShutdownRefused"
    SPEND_ANOMALY = "SpendAnomaly"
    SPOT_FALLBACK = "SpotFallback"
    SPOT_INTERRUPTED = "SpotInterrupted"
    SPOT_PLACED = "SpotPlaced"
    SPOT_RECOVERED = "SpotRecovered"
    SPOT_UNAVAILABLE = "SpotUnavailable"
    TARGET_CONFLICT = "TargetConflict"
    TARGET_FORBIDDEN = "TargetForbidden"
    TARGET_NOT_FOUND = "TargetNotFound"
    TARGET_NOT_SCALABLE = "TargetNotScalable"
    WAITING_FOR_SPOT = "WaitingForSpot"
    WAITING_FOR_START_WINDOW = "WaitingForStartWindow"


@dataclass(frozen=True)
class PostEvent:
    """A plan's step that posts an Event on the workload (``type``: Normal or Warning)."""

    type: str
    reason: EventReason
    message: str
