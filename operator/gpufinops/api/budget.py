"""Budgets: alerting thresholds and what to do when the money runs out."""

from enum import StrEnum
from itertools import pairwise

from pydantic import ConfigDict, Field, field_validator, model_validator

from gpufinops.api.base import ApiModel, cel, rule


class Enforcement(StrEnum):
    ALERT = "Alert"
    THROTTLE = "Throttle"
    SUSPEND = "Suspend"


_MAX_THRESHOLDS = 10
_ASCENDING = (
    "[" + ", ".join(str(i) for i in range(1, _MAX_THRESHOLDS)) + "]"
    ".all(i, i >= size(self) || self[i - 1] < self[i])"
)


class Budget(ApiModel):
    """Spending limits for this workload, in USD per calendar period."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.monthlyUSD) || has(self.dailyUSD)",
                "set monthlyUSD or dailyUSD (or both)",
                reason="FieldValueRequired",
            )
        )
    )

    monthly_usd: float | None = Field(
        default=None, alias="monthlyUSD", ge=0, description="Budget per calendar month (USD)."
    )
    daily_usd: float | None = Field(
        default=None, alias="dailyUSD", ge=0, description="Budget per calendar day (USD)."
    )
    alert_thresholds: list[float] = Field(
        default=[0.5, 0.8, 1.0],
        min_length=1,
        max_length=_MAX_THRESHOLDS,
        description="Fractions of the budget at which to alert, each in (0, 1.5], ascending.",
        json_schema_extra={
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1.5},
            **cel(rule(_ASCENDING, "alertThresholds must be in ascending order")),
        },
    )
    enforcement: Enforcement = Field(
        default=Enforcement.ALERT,
        description="Alert: report only. Throttle: no scale-up beyond current replicas. "
        "Suspend: stop the workload (Training and Experiment; Inference only with "
        "suspendInference).",
    )
    suspend_inference: bool = Field(
        default=False,
        description="Explicit consent to let Suspend scale an Inference workload to zero.",
    )

    @field_validator("alert_thresholds")
    @classmethod
    def _thresholds(cls, value: list[float]) -> list[float]:
        if any(not 0 < t <= 1.5 for t in value):
            raise ValueError("each alert threshold must be in (0, 1.5]")
        if any(b <= a for a, b in pairwise(value)):
            raise ValueError("alertThresholds must be in ascending order")
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> "Budget":
        if self.monthly_usd is None and self.daily_usd is None:
            raise ValueError("set monthlyUSD or dailyUSD (or both)")
        return self
