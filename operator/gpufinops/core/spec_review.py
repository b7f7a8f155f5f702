"""What the operator reports when it (re)reads an AIWorkload's spec."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gpufinops.api.spec import AIWorkloadSpec, WorkloadType
from gpufinops.api.status import Condition, ConditionStatus, ConditionType
from gpufinops.core.conditions import find_condition, set_condition
from gpufinops.core.events import EventReason
from gpufinops.core.validation import SpecCheck


@dataclass(frozen=True)
class SpecReview:
    """Conditions to store and the Event to post after reading a spec."""

    conditions: list[Condition]
    target: str | None
    event_type: str  # "Normal" or "Warning", as Kubernetes Events use
    event_reason: EventReason
    event_message: str


def target_of(spec: AIWorkloadSpec) -> str | None:
    """The object the workload drives, as Kind/name (for status and printer columns)."""
    if spec.inference is not None:
        return f"{spec.inference.target_ref.kind}/{spec.inference.target_ref.name}"
    if spec.experiment is not None:
        return f"{spec.experiment.target_ref.kind}/{spec.experiment.target_ref.name}"
    if spec.training is not None and spec.training.job_ref is not None:
        return f"{spec.training.job_ref.kind}/{spec.training.job_ref.name}"
    return None


def review_spec(
    check: SpecCheck,
    conditions: Sequence[Condition],
    *,
    generation: int | None,
    now: datetime,
    job_name: str | None = None,
) -> SpecReview:
    """Turn a spec check into conditions (Ready / InvalidSpec) and one Event."""
    if check.valid and check.spec is not None:
        spec = check.spec
        target = target_of(spec) or (f"Job/{job_name}" if job_name else None)
        message = f"{spec.type} workload accepted in {spec.mode} mode"
        out = set_condition(
            conditions,
            type=ConditionType.INVALID_SPEC,
            status=ConditionStatus.FALSE,
            reason="SpecValid",
            message="The spec is valid.",
            now=now,
            generation=generation,
        )
        ready = find_condition(out, ConditionType.READY)
        looped = spec.type in (WorkloadType.INFERENCE, WorkloadType.TRAINING)
        if not looped:
            out = set_condition(
                out,
                type=ConditionType.READY,
                status=ConditionStatus.TRUE,
                reason="Accepted",
                message=message,
                now=now,
                generation=generation,
            )
        elif ready is None or ready.reason in ("InvalidSpec", "Accepted"):
            # The autoscaler (Inference) and the placement loop (Training) own Ready:
            # they know whether signals are read and where the Job runs.
            first = "autoscaling tick" if spec.type == WorkloadType.INFERENCE else "placement"
            out = set_condition(
                out,
                type=ConditionType.READY,
                status=ConditionStatus.UNKNOWN,
                reason="Starting",
                message=f"{message}; waiting for the first {first}",
                now=now,
                generation=generation,
            )
        return SpecReview(out, target, "Normal", EventReason.ACCEPTED, message)
    summary = check.summary()
    out = set_condition(
        conditions,
        type=ConditionType.INVALID_SPEC,
        status=ConditionStatus.TRUE,
        reason="InvalidSpec",
        message=summary,
        now=now,
        generation=generation,
    )
    out = set_condition(
        out,
        type=ConditionType.READY,
        status=ConditionStatus.FALSE,
        reason="InvalidSpec",
        message=f"Fix the spec; nothing is changed until then: {summary}",
        now=now,
        generation=generation,
    )
    return SpecReview(out, None, "Warning", EventReason.INVALID_SPEC, summary)
