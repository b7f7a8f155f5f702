"""AIWorkload lifecycle: re-validate the spec, report conditions and an Event."""

from datetime import UTC, datetime
from typing import Any

import kopf

from gpufinops.adapters.status import conditions_patch, read_conditions
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.config.model import OperatorConfig
from gpufinops.core.admission import assess
from gpufinops.core.validation import check_spec
from gpufinops.handlers.indexes import namespace_view


def claimed_target(name: str, spec: Any) -> tuple[str, str] | None:
    """(kind, name) of the object an AIWorkload drives, read from its raw spec."""
    spec = spec if isinstance(spec, dict) else {}
    kind = spec.get("type")
    section = spec.get({"Inference": "inference", "Experiment": "experiment"}.get(kind, "")) or {}
    ref = section.get("targetRef") if isinstance(section, dict) else None
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        return str(ref.get("kind") or "Deployment"), ref["name"]
    training = spec.get("training") if kind == "Training" else None
    if isinstance(training, dict):
        job = training.get("jobRef")
        return "Job", str(job["name"]) if isinstance(job, dict) and "name" in job else name
    return None


@kopf.index(GROUP, VERSION, PLURAL)
def target_claims(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str, str], str]:
    """Which AIWorkloads drive each object: two on one target both refuse to act."""
    target = claimed_target(name, dict(spec))
    return {(namespace, *target): f"AIWorkload/{name}"} if target else {}


def rival_claims(indexes: Any, namespace: str, kind: str, target: str, name: str) -> list[str]:
    """The other AIWorkloads that drive ``kind/target`` besides ``name``."""
    claims = indexes["target_claims"].get((namespace, kind, target), [])
    return sorted({c for c in claims if c != f"AIWorkload/{name}"})


@kopf.index("", "v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    """Every namespace's labels: what its workloads are entitled to (``core.tenancy``)."""
    return {name: dict(labels)}


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    namespace: str | None = None,
    reason: kopf.Reason | str | None = None,
    **indexes: Any,
) -> None:
    """Validate the spec as the operator sees it and say so in status and Events.

    On resume (an operator restart) a workload whose status already says exactly
    this is left alone: a restart of a large fleet would otherwise send one status
    patch and one Event per workload that tell nobody anything new.
    """
    config: OperatorConfig = memo.config
    generation = meta.get("generation")
    check = check_spec(spec, config, namespace_view(indexes, namespace or ""))
    job_name = body.get("metadata", {}).get("name")
    current = read_conditions(status)
    result = assess(
        check,
        current,
        generation=generation,
        now=datetime.now(UTC),
        job_name=job_name,
    )
    if (
        reason == kopf.Reason.RESUME
        and status.get("observedGeneration") == generation
        and status.get("target") == result.target
        and list(result.conditions) == current
    ):
        logger.debug("spec unchanged since the last time it was checked")
        return
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = conditions_patch(result.conditions)
    patch.status["target"] = result.target
    kopf.event(
        body, type=result.event_type, reason=result.event_reason, message=result.event_message
    )
    if check.valid:
        logger.info("spec accepted", extra={"generation": generation})
    else:
        logger.warning(f"spec rejected: {check.summary()}")
