"""The Training section: batch Jobs placed on spot GPU pools with safe fallback."""

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from gpufinops.api.base import CRON, DNS_SUBDOMAIN, ApiModel, cel, check_cron, check_timezone, rule


class JobRef(ApiModel):
    """A Job (or JobSet) the user creates themselves; it must be created with
    `suspend: true`."""

    kind: Literal["Job", "JobSet"] = Field(
        default="Job",
        description="Job (batch/v1) or JobSet (jobset.x-k8s.io/v1alpha2: every replicated "
        "Job's pods go to the chosen pool, suspended and resumed as one).",
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the Job or JobSet in the AIWorkload's namespace (created suspended).",
    )


class Spot(ApiModel):
    """Use of interruptible (spot) GPU capacity."""

    enabled: bool = Field(default=True, description="Prefer spot pools when they are cheaper.")
    max_interruptions: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Interruptions tolerated before moving to on-demand capacity.",
    )
    pending_timeout_seconds: int = Field(
        default=600,
        ge=0,
        le=86400,
        description="Seconds the Job may wait unschedulable on spot before moving to on-demand.",
    )
    fallback_to_on_demand: bool = Field(
        default=True,
        description="Move to on-demand capacity when spot fails; when false, only report.",
    )


class Checkpoint(ApiModel):
    """How often the job saves progress, which bounds the work an interruption loses."""

    interval_seconds: int = Field(
        ge=0, le=604800, description="Seconds between checkpoints (0: the job never checkpoints)."
    )


class StartWindow(ApiModel):
    """A recurring window in which the job may start (e.g. off-peak hours)."""

    cron: str = Field(
        pattern=CRON, max_length=128, description="Start of each window, five-field cron."
    )
    duration_seconds: int = Field(
        gt=0, le=604800, description="Length of each window in seconds (at most a week)."
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone of the cron.")

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)


_TEMPLATE_OBJECTS = (
    ("template",),
    ("template", "metadata"),
    ("template", "metadata", "labels"),
    ("template", "spec"),
    ("podFailurePolicy",),
)
"""Parts of a jobTemplate the operator adds to (labels, restartPolicy, a failure rule)."""


class Training(ApiModel):
    """A training Job placed on the cheapest suitable GPU pool."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.jobTemplate) != has(self.jobRef)",
                "exactly one of jobTemplate or jobRef must be set",
                reason="FieldValueRequired",
            )
        )
    )

    job_template: dict[str, Any] | None = Field(
        default=None,
        description="A batch/v1 JobSpec; the operator creates the Job (owned by this "
        "AIWorkload), suspended until it has chosen a node pool.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    job_ref: JobRef | None = Field(
        default=None, description="An existing Job, created with `suspend: true`."
    )
    kueue_queue_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=DNS_SUBDOMAIN,
        description="Kueue LocalQueue that admits the Job made from jobTemplate (its "
        "kueue.x-k8s.io/queue-name label). Kueue then decides when and where it runs; the "
        "operator never unsuspends or places it, and reports its pool, spend and budget. For "
        "a jobRef Job, label the Job itself.",
    )
    spot: Spot = Field(
        default_factory=Spot,
        json_schema_extra={"default": {}},
        description="Spot capacity and its fallback.",
    )
    checkpoint: Checkpoint | None = Field(
        default=None, description="Checkpointing of the job, used to weigh interruption cost."
    )
    expected_duration_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Expected run time without interruptions; used to tell whether the "
        "deadline is at risk.",
    )
    deadline: datetime | None = Field(
        default=None, description="RFC 3339 time by which the job must have finished."
    )
    start_windows: list[StartWindow] | None = Field(
        default=None,
        max_length=20,
        description="Windows in which the job may start; it starts earlier only when the "
        "deadline needs it.",
    )

    @field_validator("job_template")
    @classmethod
    def _template_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """The JobSpec is free-form, but the operator writes into these objects."""
        for path in _TEMPLATE_OBJECTS:
            node: Any = value
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None and not isinstance(node, dict):
                raise ValueError(
                    f"jobTemplate.{'.'.join(path)} must be an object, got {type(node).__name__}"
                )
        rules = ((value or {}).get("podFailurePolicy") or {}).get("rules")
        if rules is not None and not isinstance(rules, list):
            raise ValueError(
                f"jobTemplate.podFailurePolicy.rules must be a list, got {type(rules).__name__}"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "Training":
        if (self.job_template is None) == (self.job_ref is None):
            raise ValueError("exactly one of jobTemplate or jobRef must be set")
        return self
