"""Training Jobs and their pods: what the placement loop reads, and the patches it applies.

The Job is held suspended until a pool is chosen, as Kueue does: while a Job is
suspended and not started (``status.startTime`` unset, which the Job controller
also ensures after a re-suspend) its pod template's scheduling directives are
mutable, so one merge patch can move it to a pool and unsuspend it.
"""

import copy
import math
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity as kube_quantity

from gpufinops.api.resource import GROUP, KIND
from gpufinops.config.model import NodePool

# Built here from bodies, defined in the core (which decides from them alone).
from gpufinops.core.placement.lifecycle import job_gpus as job_gpus
from gpufinops.core.placement.lifecycle import job_name_taken as job_name_taken
from gpufinops.core.placement.lifecycle import restart_policy_warning
from gpufinops.core.placement.observed import JobView as JobView
from gpufinops.core.placement.observed import PodView as PodView

WORKLOAD_LABEL = "gpufinops.dev/workload"
POOL_LABEL = "gpufinops.dev/pool"
CAPACITY_LABEL = "gpufinops.dev/capacity-type"
GPU_RESOURCE = "nvidia.com/gpu"

DISRUPTION_RULE: dict[str, Any] = {
    "action": "Ignore",
    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
}
"""Interrupted pods (evicted, node drained or gone) do not count against backoffLimit."""


class JobError(RuntimeError):
    """A Job could not be read or changed; the message says why (RBAC, conflict, ...)."""


class JobNameTaken(JobError):
    """A Job of the name the workload's own Job needs exists and is not the workload's:
    it is never adopted (nor suspended, placed or unsuspended)."""


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes resource quantity (``2``, ``500m``, ``1Gi``, ``1e3``) as a number, read
    by the Kubernetes client; ``None`` when ``value`` is not one (or is negative, or not
    finite).

    Bodies from watches may hold anything where a quantity belongs, so every way the
    client refuses one (``ValueError``, a decimal error) reads as no quantity rather
    than an exception in the index that reads it. The client is laxer than the API
    server (it also takes ``1K`` or ``1_000``), which only matters for values the
    server would never have stored.
    """
    if isinstance(value, bool):  # an int to Python, never a quantity to the API
        return None
    raw = value if isinstance(value, int | float) else str(value).strip()
    try:
        number = float(kube_quantity(raw))  # type: ignore[no-untyped-call]
    except (ArithmeticError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _quantity(value: Any) -> float:
    """A GPU quantity; one the API server would never store counts as none."""
    return parse_quantity(value) or 0.0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a list field; anything else in it (or instead of it) is skipped."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _count(value: Any) -> int:
    """A non-negative integer field (counters, generation); unreadable values count as 0."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


def pod_template_gpus(pod_spec: Mapping[str, Any]) -> float:
    """GPUs one pod holds: the sum over its containers (limits, else requests).

    Bodies come from watches and may be malformed (an object stored before a
    schema change, a hand-made fixture): such fields count as no GPUs rather
    than crash the index that reads them.
    """
    total = 0.0
    for container in _mappings(_mapping(pod_spec).get("containers")):
        resources = _mapping(container.get("resources"))
        value = _mapping(resources.get("limits")).get(GPU_RESOURCE)
        if value is None:
            value = _mapping(resources.get("requests")).get(GPU_RESOURCE)
        if value is not None:
            total += _quantity(value)
    return total


def controller_ref(meta: Any, kind: str, group: str) -> Mapping[str, Any] | None:
    """The object's controller ownerReference when it is a ``kind`` of API ``group``
    (``""``: the core group) with a name and a uid; None otherwise.

    Only the controller reference says whose object it is: labels can be copied by
    anyone who can create a pod, an ownerReference names one object by its uid.
    """
    for ref in _mappings(_mapping(meta).get("ownerReferences")):
        if ref.get("controller") is not True:
            continue
        api_version = ref.get("apiVersion")
        ref_group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
        name, uid = ref.get("name"), ref.get("uid")
        if ref.get("kind") != kind or ref_group != group:
            return None
        if isinstance(name, str) and name and isinstance(uid, str) and uid:
            return ref
        return None
    return None


JOBSET_GROUP = "jobset.x-k8s.io"
JOBSET_VERSION = "v1alpha2"


def job_of_pod(meta: Any) -> tuple[str, str] | None:
    """(name, uid) of the Job that controls a pod, from its controller ownerReference."""
    ref = controller_ref(meta, "Job", "batch")
    return None if ref is None else (str(ref["name"]), str(ref["uid"]))


def _condition(conditions: Any, ctype: str) -> Mapping[str, Any]:
    for c in _mappings(conditions):
        if c.get("type") == ctype:
            return c
    return {}


KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def job_view(body: Mapping[str, Any]) -> JobView:
    """The Job as the placement loop reads it; malformed fields read as absent."""
    meta = _mapping(body.get("metadata"))
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    pod_spec = _mapping(_mapping(spec.get("template")).get("spec"))
    owner = controller_ref(meta, KIND, GROUP)
    conditions = status.get("conditions")
    return JobView(
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        generation=_count(meta.get("generation")),
        suspended=bool(spec.get("suspend")),
        started=status.get("startTime") is not None,
        active=_count(status.get("active")),
        succeeded=_count(status.get("succeeded")),
        failed=_count(status.get("failed")),
        complete=_condition(conditions, "Complete").get("status") == "True",
        failed_permanently=_condition(conditions, "Failed").get("status") == "True",
        node_selector={str(k): str(v) for k, v in _mapping(pod_spec.get("nodeSelector")).items()},
        tolerations=tuple(_mappings(pod_spec.get("tolerations"))),
        gpus_per_pod=pod_template_gpus(pod_spec),
        parallelism=_count(spec.get("parallelism")) if "parallelism" in spec else 1,
        owned_by=None if owner is None else str(owner["name"]),
        owner_uid=None if owner is None else str(owner["uid"]),
        kueue_queue=_mapping(meta.get("labels")).get(KUEUE_QUEUE_LABEL),
        jobset=_jobset_of(meta),
    )


def _jobset_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    ref = controller_ref(meta, "JobSet", JOBSET_GROUP)
    return None if ref is None else (str(ref["name"]), str(ref["uid"]))


def jobset_view(body: Mapping[str, Any]) -> JobView:
    """A JobSet as the placement loop reads it, in a Job's terms.

    Its pods are all its replicated Jobs' (``replicas`` Jobs of ``parallelism`` pods
    each); the GPUs per pod are their mean, so pods x GPUs per pod is what it holds.
    Its pod templates may change while it is suspended (as Kueue relies on), so it is
    never "started"; ``active`` counts its child Jobs that still have pods, which a
    re-suspend waits for. Malformed fields read as absent.
    """
    meta = _mapping(body.get("metadata"))
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    replicated = _mappings(spec.get("replicatedJobs"))
    pods, gpus = 0, 0.0
    first: Mapping[str, Any] = {}
    for rjob in replicated:
        job_spec = _mapping(_mapping(rjob.get("template")).get("spec"))
        pod_spec = _mapping(_mapping(job_spec.get("template")).get("spec"))
        first = first or pod_spec
        count = _count(rjob.get("replicas")) if "replicas" in rjob else 1
        count *= _count(job_spec.get("parallelism")) if "parallelism" in job_spec else 1
        pods += count
        gpus += count * pod_template_gpus(pod_spec)
    jobs_status = _mappings(status.get("replicatedJobsStatus"))
    conditions = status.get("conditions")
    owner = controller_ref(meta, KIND, GROUP)
    return JobView(
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        generation=_count(meta.get("generation")),
        suspended=bool(spec.get("suspend")),
        started=False,
        active=sum(_count(s.get("active")) for s in jobs_status),
        succeeded=sum(_count(s.get("succeeded")) for s in jobs_status),
        failed=sum(_count(s.get("failed")) for s in jobs_status),
        complete=_condition(conditions, "Completed").get("status") == "True",
        failed_permanently=_condition(conditions, "Failed").get("status") == "True",
        node_selector={str(k): str(v) for k, v in _mapping(first.get("nodeSelector")).items()},
        tolerations=tuple(_mappings(first.get("tolerations"))),
        gpus_per_pod=gpus / pods if pods else 0.0,
        parallelism=pods,
        owned_by=None if owner is None else str(owner["name"]),
        owner_uid=None if owner is None else str(owner["uid"]),
        kueue_queue=_mapping(meta.get("labels")).get(KUEUE_QUEUE_LABEL),
        kind="JobSet",
        replicated_jobs=tuple(copy.deepcopy(dict(r)) for r in replicated),
        resource_version=str(meta["resourceVersion"]) if meta.get("resourceVersion") else None,
    )


def pod_view(body: Mapping[str, Any]) -> PodView:
    """A pod as the placement loop reads it; malformed fields read as absent."""
    meta = _mapping(body.get("metadata"))
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    conditions = status.get("conditions")
    scheduled = _condition(conditions, "PodScheduled")
    disruption = _condition(conditions, "DisruptionTarget")
    job = job_of_pod(meta)
    return PodView(
        uid=str(meta.get("uid")),
        name=str(meta.get("name")),
        node=None if spec.get("nodeName") is None else str(spec.get("nodeName")),
        phase=str(status.get("phase") or "Pending"),
        unschedulable=scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable",
        disrupted=str(disruption.get("reason") or "DisruptionTarget")
        if disruption.get("status") == "True"
        else None,
        terminating=meta.get("deletionTimestamp") is not None,
        job_uid=None if job is None else job[1],
    )


def build_job(
    name: str,
    namespace: str,
    owner_uid: str,
    template: Mapping[str, Any],
    kueue_queue: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """The Job for a ``jobTemplate``: owned by the AIWorkload, suspended, and with a
    podFailurePolicy that ignores disruptions; plus a warning when that policy cannot
    be added (it requires ``restartPolicy: Never``)."""
    spec = dict(template)
    pod_template = dict(spec.get("template") or {})
    pod_spec = dict(pod_template.get("spec") or {})
    warning = restart_policy_warning(template)
    if pod_spec.setdefault("restartPolicy", "Never") == "Never":
        policy = dict(spec.get("podFailurePolicy") or {})
        rules = list(policy.get("rules") or [])
        if DISRUPTION_RULE not in rules:
            rules.insert(0, DISRUPTION_RULE)
        spec["podFailurePolicy"] = {**policy, "rules": rules}
    meta = dict(pod_template.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), WORKLOAD_LABEL: name}
    pod_template["metadata"] = meta
    pod_template["spec"] = pod_spec
    spec["template"] = pod_template
    spec["suspend"] = True
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {WORKLOAD_LABEL: name}
            | ({KUEUE_QUEUE_LABEL: kueue_queue} if kueue_queue else {}),
            "ownerReferences": [
                {
                    "apiVersion": "gpufinops.dev/v1alpha1",
                    "kind": "AIWorkload",
                    "name": name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
    return body, warning


def _toleration_key(t: Mapping[str, Any]) -> tuple[Any, ...]:
    return (t.get("key"), t.get("operator"), t.get("value"), t.get("effect"))


def _pool_tolerations(
    tolerations: Any, pool: NodePool, previous: NodePool | None
) -> list[dict[str, Any]]:
    """The user's tolerations, without those the previous pool injected, plus the pool's."""
    dropped = {_toleration_key(t) for t in (previous.tolerations if previous else [])}
    kept = [dict(t) for t in _mappings(tolerations) if _toleration_key(t) not in dropped]
    present = {_toleration_key(t) for t in kept}
    return kept + [dict(t) for t in pool.tolerations if _toleration_key(t) not in present]


def _pool_labels(pool: NodePool) -> dict[str, str]:
    return {POOL_LABEL: pool.name, CAPACITY_LABEL: str(pool.capacity_type)}


def jobset_placement_patch(
    job: JobView, pool: NodePool, previous: NodePool | None
) -> dict[str, Any]:
    """Merge patch that moves every pod template of a suspended JobSet to ``pool`` and
    resumes it.

    ``replicatedJobs`` is a list, which a merge patch replaces whole: the list is
    written back as read with only the scheduling directives changed, and the patch
    carries the resourceVersion it was read at, so a JobSet changed meanwhile is not
    overwritten (the API server answers 409 and the next tick reads it again).
    """
    rewritten = []
    for rjob in job.replicated_jobs:
        out = copy.deepcopy(dict(rjob))
        job_tmpl = out.setdefault("template", {})
        pod_tmpl = job_tmpl.setdefault("spec", {}).setdefault("template", {})
        meta = pod_tmpl.setdefault("metadata", {})
        meta["labels"] = {**_mapping(meta.get("labels")), **_pool_labels(pool)}
        pod_spec = pod_tmpl.setdefault("spec", {})
        selector = {
            str(k): str(v) for k, v in _mapping(pod_spec.get("nodeSelector")).items()
            if previous is None or k not in previous.selector or k in pool.selector
        }  # fmt: skip
        pod_spec["nodeSelector"] = {**selector, **pool.selector}
        pod_spec["tolerations"] = _pool_tolerations(pod_spec.get("tolerations"), pool, previous)
        rewritten.append(out)
    patch: dict[str, Any] = {"spec": {"suspend": False, "replicatedJobs": rewritten}}
    if job.resource_version:
        patch["metadata"] = {"resourceVersion": job.resource_version}
    return patch


def placement_patch(job: JobView, pool: NodePool, previous: NodePool | None) -> dict[str, Any]:
    """Merge patch that moves a suspended Job's pods to ``pool`` and unsuspends it.

    Keys and tolerations the previous pool injected are removed; the user's own
    nodeSelector entries and tolerations stay.
    """
    if job.kind == "JobSet":
        return jobset_placement_patch(job, pool, previous)
    selector: dict[str, str | None] = {}
    if previous is not None:
        selector.update({k: None for k in previous.selector if k not in pool.selector})
    selector.update(pool.selector)
    kept = _pool_tolerations(job.tolerations, pool, previous)
    return {
        "spec": {
            "suspend": False,
            "template": {
                "metadata": {"labels": _pool_labels(pool)},
                "spec": {"nodeSelector": selector, "tolerations": kept},
            },
        }
    }


class _Patches:
    """Merge patches and suspension of one kind of batch object, through the generic object
    API with plain dicts: a user's template is passed on as written, never re-typed."""

    group, version, plural, kind = "batch", "v1", "jobs", "Job"

    def __init__(self, api: client.ApiClient) -> None:
        self.objects = client.CustomObjectsApi(api)

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> int:
        """Merge-patch the object; its new generation (a watch-fed view older than it is
        stale)."""
        try:
            found = self.objects.patch_namespaced_custom_object(
                self.group, self.version, namespace, self.plural, name, dict(patch)
            )
        except ApiException as exc:
            raise JobError(
                f"patching {self.kind} {namespace}/{name} failed: {exc.reason}: {exc.body}"
            ) from exc
        meta = found.get("metadata") if isinstance(found, dict) else None
        return int((meta or {}).get("generation") or 0)

    def suspend(self, namespace: str, name: str) -> int:
        return self.patch(namespace, name, {"spec": {"suspend": True}})


class JobActions(_Patches):
    """Creates, places and suspends Jobs.

    Jobs go through the generic object API with plain dicts: a user's jobTemplate
    is passed on as written (``nvidia.com/gpu: 4`` is a valid quantity to the API
    server, which is the judge), never re-typed by the client library.
    """

    def create(self, body: Mapping[str, Any]) -> None:
        """Create the workload's Job (``body`` as ``build_job`` makes it, owner included).

        A Job of that name that already exists is the workload's only when its controller
        ownerReference is this AIWorkload's uid (a previous attempt created it); any other
        raises ``JobNameTaken``: a 409 is never read as "created before".
        """
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            self.objects.create_namespaced_custom_object(
                "batch", "v1", namespace, "jobs", dict(body)
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise JobError(f"creating Job {namespace}/{name} failed: "
                               f"{exc.reason}: {exc.body}") from exc  # fmt: skip
        # Read back with a LIST by name: the operator's role lists and watches Jobs, no GET.
        try:
            listed = self.objects.list_namespaced_custom_object(
                "batch", "v1", namespace, "jobs", field_selector=f"metadata.name={name}"
            )
        except ApiException as exc:
            raise JobError(
                f"Job {namespace}/{name} exists but could not be read to check its owner: "
                f"{exc.reason}: {exc.body}"
            ) from exc
        existing = _mappings(_mapping(listed).get("items"))
        if not existing:
            raise JobError(f"Job {namespace}/{name} was deleted meanwhile; creating it next time")
        ours = controller_ref(meta, KIND, GROUP)
        theirs = controller_ref(existing[0].get("metadata"), KIND, GROUP)
        if ours is not None and theirs is not None and theirs["uid"] == ours["uid"]:
            return  # created by a previous attempt; the index will show it
        raise JobNameTaken(job_name_taken(namespace, name))


class JobSetActions(_Patches):
    """Suspends, places and resumes JobSets (``jobRef`` with ``kind: JobSet``); they are
    never created by the operator."""

    group, version, plural, kind = JOBSET_GROUP, JOBSET_VERSION, "jobsets", "JobSet"

    def create(self, body: Mapping[str, Any]) -> None:
        raise JobError("JobSets are not created by the operator: name one in jobRef")
