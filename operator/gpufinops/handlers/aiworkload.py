"""AIWorkload lifecycle: re-validate the spec, report conditions and an Event."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufinops.adapters.status import conditions_patch, read_conditions
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.effects import EventPoster
from gpufinops.core.events import EventReason
from gpufinops.core.spec_review import SpecReview, review_spec
from gpufinops.core.tenancy import NamespaceView
from gpufinops.core.validation import SpecCheck, check_spec
from gpufinops.handlers.context import context_of
from gpufinops.handlers.events import post
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
        if isinstance(job, dict) and "name" in job:
            return str(job.get("kind") or "Job"), str(job["name"])
        return "Job", name
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


class Rivals:
    """One workload loop's view of the others on its target: a ``TargetConflict``
    Event when they change (not every tick), and whether the loop may act."""

    def __init__(self, namespace: str, name: str, post_event: EventPoster) -> None:
        self.namespace, self.name, self.post_event = namespace, name, post_event
        self._reported: list[str] = []

    def block(self, indexes: Any, kind: str, target: str) -> bool:
        """True while another AIWorkload drives ``kind/target`` too."""
        rivals = rival_claims(indexes, self.namespace, kind, target, self.name)
        if rivals != self._reported:
            self._reported = rivals
            if rivals:
                self.post_event("Warning", EventReason.TARGET_CONFLICT,
                          f"{', '.join(rivals)} also drives {kind}/{target}: not acting "
                          "until only one workload does")  # fmt: skip
        return bool(rivals)


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
    config = context_of(memo).config
    generation = meta.get("generation")
    check, result = _assessed(body, config, namespace_view(indexes, namespace or ""), status)
    if reason == kopf.Reason.RESUME and _already_says(status, generation, result):
        logger.debug("spec unchanged since the last time it was checked")
        return
    patch.status.update(_status_of(generation, result))
    post(body, result.event_type, result.event_reason, result.event_message)
    if check.valid:
        logger.info("spec accepted", extra={"generation": generation})
    else:
        logger.warning(f"spec rejected: {check.summary()}")


def _assessed(
    body: Mapping[str, Any],
    config: OperatorConfig,
    namespace: NamespaceView,
    status: Mapping[str, Any] | None = None,
) -> tuple[SpecCheck, SpecReview]:
    """The spec checked against the API, the config and its namespace, as conditions
    (``status``: the conditions to start from; the body's own by default)."""
    check = check_spec(body.get("spec"), config, namespace)
    meta = body.get("metadata") or {}
    result = review_spec(
        check,
        read_conditions(body.get("status") if status is None else status),
        generation=meta.get("generation"),
        now=datetime.now(UTC),
        job_name=meta.get("name"),
    )
    return check, result


def _already_says(status: Mapping[str, Any] | None, generation: Any, result: SpecReview) -> bool:
    status = status or {}
    return (
        status.get("observedGeneration") == generation
        and status.get("target") == result.target
        and list(result.conditions) == read_conditions(status)
    )


def _status_of(generation: Any, result: SpecReview) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "conditions": conditions_patch(result.conditions),
        "target": result.target,
    }


@kopf.index(GROUP, VERSION, PLURAL)
def workloads_by_namespace(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[str | None, dict[str, Any]]:
    """Each namespace's workloads, as much of them as the spec check reads."""
    meta = body.get("metadata") or {}
    return {
        namespace: {
            "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": {"name": meta.get("name"), "namespace": namespace,
                         "uid": meta.get("uid"), "generation": meta.get("generation")},
            "spec": dict(body.get("spec") or {}),
            "status": {k: body.get("status", {}).get(k)
                       for k in ("observedGeneration", "target", "conditions")},
        }
    }  # fmt: skip


@kopf.on.event("", "v1", "namespaces")
def namespace_relabelled(
    name: str,
    type: str | None,
    labels: kopf.Labels,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **indexes: Any,
) -> None:
    """A namespace's labels decide what its workloads are entitled to (its team, its
    pools): when they change, each workload's conditions say so at once, as its loops
    already act on the new labels. A plain event handler: nothing is written on the
    Namespace (a field handler would keep its state in the Namespace's annotations)."""
    context = context_of(memo)
    seen = context.shared.namespace_labels_seen
    before, now = seen.get(name), dict(labels)
    if type == "DELETED":
        seen.pop(name, None)
        return
    seen[name] = now
    if before is None or before == now:
        return  # first sight (start-up, a re-listed watch): the spec handler assesses it
    config = context.config
    view = NamespaceView(name, now)
    api = client.CustomObjectsApi(context.api)
    for body in indexes["workloads_by_namespace"].get(name, []):
        generation = body["metadata"].get("generation")
        if (body.get("status") or {}).get("observedGeneration") != generation:
            continue  # not handled yet: the spec handler will, with these labels
        _, result = _assessed(body, config, view)
        if _already_says(body.get("status"), generation, result):
            continue
        workload = body["metadata"]["name"]
        try:
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, name, PLURAL, workload, {"status": _status_of(generation, result)},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            logger.warning(f"AIWorkload {name}/{workload}: conditions not updated: {exc.reason}")
            continue
        post(
            body, result.event_type, result.event_reason,
            f"namespace {name} relabelled: {result.event_message}",
        )  # fmt: skip
