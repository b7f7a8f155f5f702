"""The Experiment section: a sandbox with a lifetime and an idle timer."""

from typing import Literal

from pydantic import Field

from gpufinops.api.base import DNS_SUBDOMAIN, ApiModel


class ExperimentTargetRef(ApiModel):
    """The object running the experiment, in the AIWorkload's namespace."""

    kind: Literal["Deployment", "StatefulSet", "Job"] = Field(
        description="Kind of the object: Deployment, StatefulSet or Job."
    )
    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the object."
    )


class Idle(ApiModel):
    """When a sandbox counts as idle and is shut down."""

    after_seconds: int = Field(
        default=3600, ge=60, le=2592000, description="Seconds of idleness before shutdown (>= 60)."
    )
    gpu_utilization_below_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Idle when every GPU stays below this utilisation (DCGM) for the whole "
        "timer; without it, idle means no running pod holds a GPU.",
    )


class Experiment(ApiModel):
    """A sandbox (notebook, trial run) that is shut down when idle or too old."""

    target_ref: ExperimentTargetRef = Field(description="The object running the experiment.")
    max_lifetime_seconds: int | None = Field(
        default=None,
        ge=60,
        le=31536000,
        description="Shut down this long after creation, whatever the activity (>= 60 s).",
    )
    idle: Idle = Field(
        default_factory=Idle, json_schema_extra={"default": {}}, description="Idle shutdown timer."
    )
