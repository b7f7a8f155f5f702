"""``spec``: what the user wants done with the workload (intent, never observation)."""

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from gpufinops.api.base import DNS_LABEL, ApiModel, cel, rule
from gpufinops.api.budget import Budget, Enforcement
from gpufinops.api.experiment import Experiment
from gpufinops.api.inference import Inference
from gpufinops.api.training import Training


class WorkloadType(StrEnum):
    INFERENCE = "Inference"
    TRAINING = "Training"
    EXPERIMENT = "Experiment"


class Mode(StrEnum):
    ACTIVE = "Active"
    RECOMMEND = "Recommend"


class CostAllocation(ApiModel):
    """Who pays: the keys spend is reported and budgeted by."""

    team: str = Field(
        min_length=1, max_length=63, description="Team that owns the spend (required)."
    )
    project: str | None = Field(default=None, max_length=63, description="Project name.")
    cost_center: str | None = Field(
        default=None, max_length=63, description="Finance cost centre code."
    )
    model: str | None = Field(
        default=None, max_length=253, description="Model served or trained, e.g. llama-3-70b."
    )
    environment: str | None = Field(
        default=None, max_length=63, description="Environment, e.g. prod, staging, dev."
    )


_SECTIONS = {
    WorkloadType.INFERENCE: "inference",
    WorkloadType.TRAINING: "training",
    WorkloadType.EXPERIMENT: "experiment",
}


def _section_rules() -> list[dict[str, str]]:
    rules = []
    for kind, section in _SECTIONS.items():
        rules.append(
            rule(
                f"self.type != '{kind}' || has(self.{section})",
                f"spec.{section} is required when spec.type is {kind}",
                f".{section}",
                "FieldValueRequired",
            )
        )
        rules.append(
            rule(
                f"self.type == '{kind}' || !has(self.{section})",
                f"spec.{section} is only allowed when spec.type is {kind}",
                f".{section}",
                "FieldValueForbidden",
            )
        )
    return rules


_SPEC_RULES = cel(
    *_section_rules(),
    rule(
        "self.type == 'Inference' || !has(self.replicas)",
        "spec.replicas (set by kubectl scale) applies to Inference workloads only",
        ".replicas",
        "FieldValueForbidden",
    ),
    rule(
        "!has(self.replicas) || !has(self.inference) || "
        "self.replicas <= self.inference.maxReplicas",
        "spec.replicas must be less than or equal to spec.inference.maxReplicas",
        ".replicas",
    ),
    rule(
        "self.type != 'Inference' || !has(self.budget) || self.budget.enforcement != 'Suspend' "
        "|| self.budget.suspendInference",
        "budget enforcement Suspend on an Inference workload drops traffic: "
        "set budget.suspendInference: true to consent, or use Throttle",
        ".budget.enforcement",
    ),
)


class AIWorkloadSpec(ApiModel):
    """Desired behaviour of one AI workload: how to scale or place it and what it may cost."""

    model_config = ConfigDict(json_schema_extra=_SPEC_RULES)

    type: WorkloadType = Field(
        description="Inference (autoscaled serving), Training (batch job on spot), or "
        "Experiment (sandbox with budget and auto-shutdown)."
    )
    mode: Mode = Field(
        default=Mode.ACTIVE,
        description="Active: act on decisions. Recommend: compute and report decisions in "
        "status and Events but change nothing (a dry run).",
    )
    cost_allocation: CostAllocation = Field(
        description="Who pays for this workload; spend is reported by these keys."
    )
    node_pools: list[str] | None = Field(
        default=None,
        max_length=16,
        description="Node pools (from the operator config) this workload may use, preferred "
        "first. Empty or absent: every pool of the operator config that admits the "
        "namespace (its namespaceSelector), in the config's order.",
        json_schema_extra={
            "items": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
            "x-kubernetes-list-type": "set",
        },
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        description="Manual override for Inference (what `kubectl scale aiw` sets): hold the "
        "Deployment at this count instead of autoscaling. Remove it to resume autoscaling.",
    )
    inference: Inference | None = Field(
        default=None, description="Required when type is Inference."
    )
    training: Training | None = Field(default=None, description="Required when type is Training.")
    experiment: Experiment | None = Field(
        default=None, description="Required when type is Experiment."
    )
    budget: Budget | None = Field(default=None, description="Spending limits and alerts.")

    @model_validator(mode="after")
    def _sections_match_type(self) -> "AIWorkloadSpec":
        pools = self.node_pools or []
        for i, name in enumerate(pools):
            if name in pools[:i]:
                raise ValueError(f"nodePools[{i}]: duplicate value {name[:63]!r}")
        for kind, section in _SECTIONS.items():
            present = getattr(self, section) is not None
            if self.type == kind and not present:
                raise ValueError(f"spec.{section} is required when spec.type is {kind}")
            if self.type != kind and present:
                raise ValueError(f"spec.{section} is only allowed when spec.type is {kind}")
        if self.replicas is not None:
            if self.inference is None:
                raise ValueError(
                    "spec.replicas (set by kubectl scale) applies to Inference workloads only"
                )
            if self.replicas > self.inference.max_replicas:
                raise ValueError(
                    "spec.replicas must be less than or equal to spec.inference.maxReplicas"
                )
        if (
            self.type == WorkloadType.INFERENCE
            and self.budget is not None
            and self.budget.enforcement == Enforcement.SUSPEND
            and not self.budget.suspend_inference
        ):
            raise ValueError(
                "budget enforcement Suspend on an Inference workload drops traffic: "
                "set budget.suspendInference: true to consent, or use Throttle"
            )
        return self
