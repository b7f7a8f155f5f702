"""Who holds which GPUs: pods, as a Kopf index delivers them, turned into allocations.

Spend is charged to the AIWorkload whose target owns the pod, on the pool of
the node the pod runs on. Owners are resolved from what the pod itself
carries, its controller ownerReference, so no ReplicaSet or Job has to be read:
a Deployment's pods belong to ReplicaSet ``<deployment>-<hash>``, where
``<hash>`` is the pod's own ``pod-template-hash`` label. A label alone
(``batch.kubernetes.io/job-name``, which anyone creating a pod can copy) makes
no owner: a pod without a controller reference is nobody's.

GPUs are counted by the rules of ``core.gpus`` (``adapters.gpu_resources``), as
idle shutdown counts them. What a time-sliced unit is worth depends on its
node's labels, so the index keeps a pod's GPU requests, not a GPU count: the
count is taken when the pod is read with its node's labels (``gpu_pod``).
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gpufinops.adapters.gpu_resources import gpu_requests, node_gpu_count
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import NodePool
from gpufinops.core.cost.accounting import Allocation, CostLabels, Holding
from gpufinops.core.gpus import (
    COUNT_LABEL,
    DEFAULT_GPU_RESOURCES,
    REPLICAS_LABEL,
    GpuResource,
    gpu_use,
)

NODE_LABELS = (COUNT_LABEL, REPLICAS_LABEL)
"""The node labels GPU counting reads: all of its labels a node's index record keeps."""
TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class GpuPod:
    """A pod holding GPUs on a node, and since (and until) when it has held them."""

    namespace: str
    name: str
    node: str
    gpus: float
    """GPUs its requests are worth on its node (a MIG slice g/7, a shared replica 1/replicas)."""
    owner: tuple[str, str] | None
    """(kind, name) of the workload-level owner: Deployment, StatefulSet or Job."""
    since: datetime | None
    until: datetime | None
    """When a finished pod stopped holding its GPUs; None while it runs."""


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def owner_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """The Deployment, StatefulSet or Job a pod belongs to, from its controller
    ownerReference; None without one (labels are not ownership)."""
    labels = meta.get("labels") or {}
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        if kind == "ReplicaSet":
            suffix = f"-{labels.get(TEMPLATE_HASH, '')}"
            if len(suffix) > 1 and name.endswith(suffix):
                return "Deployment", name[: -len(suffix)]
            return "ReplicaSet", name
        return kind, name
    return None


def _held(status: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """Since when the pod's containers have run, and until when if they all ended.

    Container start times are when the GPUs were handed over; the pod's
    startTime (before image pulls) stands in when no container has started yet.
    """
    started, finished = [], []
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for key in ("running", "terminated"):
            at = _time((state.get(key) or {}).get("startedAt"))
            if at is not None:
                started.append(at)
        end = _time((state.get("terminated") or {}).get("finishedAt"))
        if end is not None:
            finished.append(end)
    phase = status.get("phase")
    since = min(started) if started else None
    if since is None and phase == "Running":
        since = _time(status.get("startTime"))
    until = None
    if phase in ("Succeeded", "Failed"):
        until = max(finished) if finished else since
    return since, until


def gpu_pod_record(
    body: Mapping[str, Any], rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES
) -> dict[str, Any] | None:
    """What the index keeps of a pod: only pods holding GPUs on a node, a few fields each.

    A pod is kept when its GPU requests are worth more than 0 GPUs (companions
    such as HAMi's ``nvidia.com/gpumem`` and DRA claims alone are not priced);
    the requests are kept as they are, since a shared unit's worth depends on
    the node's labels.
    """
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    node = spec.get("nodeName")
    if not node:
        return None
    requests = gpu_requests(spec, rules)
    if not gpu_use(requests, 0, rules).gpus > 0:
        return None
    since, until = _held(body.get("status") or {})
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "node": node,
        "requests": requests,
        "owner": owner_of(meta),
        "since": since,
        "until": until,
    }


def gpu_pod(
    record: Mapping[str, Any],
    rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES,
    node_labels: Mapping[str, str] | None = None,
) -> GpuPod:
    """The pod of an index record, its GPUs counted on a node with ``node_labels``
    (``Pools.labels`` of its node; unknown: a shared unit is worth a whole GPU)."""
    owner = record.get("owner")
    return GpuPod(
        namespace=record["namespace"],
        name=record["name"],
        node=record["node"],
        gpus=gpu_use(record["requests"], 0, rules, node_labels).gpus,
        owner=(str(owner[0]), str(owner[1])) if owner else None,
        since=record.get("since"),
        until=record.get("until"),
    )


def targets_of(name: str, spec: AIWorkloadSpec) -> list[tuple[str, str]]:
    """The (kind, name) owners whose pods are the workload's, in its namespace, as
    ``owner_of`` names them; the first is the one whose pods are its replicas.

    A Rollout's pods come through ReplicaSets named as a Deployment's are (so
    ``owner_of`` reports them as one); a LeaderWorkerSet's leaders through the
    StatefulSet of its name (its workers: ``lws_worker_owners``).
    """
    if spec.inference is not None:
        ref = spec.inference.target_ref
        if ref.kind in ("Deployment", "Rollout"):
            # With spec.inference.spot, the spot children's pods are the workload's too.
            spot = spec.inference.spot.pools if spec.inference.spot is not None else []
            return [("Deployment", ref.name)] + [
                ("Deployment", f"{ref.name}-spot-{pool}") for pool in spot
            ]
        if ref.kind == "LeaderWorkerSet":
            return [("StatefulSet", ref.name)]
        return [(ref.kind, ref.name)]
    if spec.training is not None:
        job_ref = spec.training.job_ref
        if job_ref is not None and job_ref.kind == "JobSet":
            return [("JobSet", job_ref.name)]  # its child Jobs' pods: see ``through_jobsets``
        return [("Job", job_ref.name if job_ref is not None else name)]
    if spec.experiment is not None:
        return [(spec.experiment.target_ref.kind, spec.experiment.target_ref.name)]
    return []


def through_jobsets(
    pods: Iterable[GpuPod], jobset_of: Callable[[str, str], str | None]
) -> list[GpuPod]:
    """Pods of a JobSet's child Jobs, owned by the JobSet (``("JobSet", name)``).

    ``jobset_of(namespace, job)`` is the JobSet that controls the Job (its controller
    ownerReference, from the Job index), or None: ownership is followed up one level,
    never guessed from names or labels.
    """
    out = []
    for pod in pods:
        if pod.owner is not None and pod.owner[0] == "Job":
            jobset = jobset_of(pod.namespace, pod.owner[1])
            if jobset is not None:
                pod = replace(pod, owner=("JobSet", jobset))
        out.append(pod)
    return out


def lws_worker_owners(spec: AIWorkloadSpec) -> re.Pattern[str] | None:
    """Names of the StatefulSets holding a LeaderWorkerSet target's workers
    (``<name>-<group>``); None for any other target."""
    if spec.inference is None or spec.inference.target_ref.kind != "LeaderWorkerSet":
        return None
    return re.compile(re.escape(spec.inference.target_ref.name) + "-[0-9]+")


def pool_node_record(
    name: str,
    labels: Mapping[str, Any],
    allocatable: Mapping[str, Any],
    rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES,
) -> dict[str, Any]:
    """What the index keeps of a pool's node: its name, GPU labels and GPU allocatable."""
    return {
        "metadata": {
            "name": name,
            "labels": {k: str(labels[k]) for k in NODE_LABELS if k in labels},
        },
        "status": {
            "allocatable": {
                str(k): v for k, v in allocatable.items() if any(r.matches(str(k)) for r in rules)
            }
        },
    }


@dataclass(frozen=True)
class Pools:
    """Node → pool, and GPUs per pool, from the nodes the operator config selects."""

    by_node: dict[str, NodePool]
    capacity: dict[str, float]
    """Physical GPUs per pool: each node's ``nvidia.com/gpu.count``, else its GPU resources'
    worth (``core.gpus.node_gpus``)."""
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Node → the labels GPU counting reads (``NODE_LABELS``), to price its pods with."""

    @classmethod
    def of(
        cls,
        nodes: Iterable[tuple[NodePool, Mapping[str, Any]]],
        rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES,
    ) -> "Pools":
        by_node: dict[str, NodePool] = {}
        capacity: dict[str, float] = {}
        labels: dict[str, dict[str, str]] = {}
        for pool, body in nodes:
            meta = body.get("metadata") or {}
            name = meta.get("name")
            if not name:
                continue
            by_node[str(name)] = pool
            node_labels = meta.get("labels") or {}
            labels[str(name)] = {k: str(node_labels[k]) for k in NODE_LABELS if k in node_labels}
            gpus = node_gpu_count(body, rules)
            capacity[pool.name] = capacity.get(pool.name, 0.0) + gpus
        return cls(by_node, capacity, labels)


def holds_at(pod: GpuPod, t: datetime) -> bool:
    return pod.since is not None and pod.since <= t and (pod.until is None or pod.until > t)


def held_seconds(pod: GpuPod, start: datetime, end: datetime) -> float:
    """Seconds of ``[start, end)`` during which the pod held its GPUs."""
    if pod.since is None:
        return 0.0
    a = max(start, pod.since)
    b = min(end, pod.until) if pod.until is not None else end
    return max(0.0, (b - a).total_seconds())


def allocations_at(
    pods: Iterable[GpuPod], pools: Pools, t: datetime, workload: str, labels: CostLabels
) -> list[Allocation]:
    """GPUs the workload's pods hold at ``t``, per pool (pods off every pool: not charged)."""
    by_pool: dict[str, float] = {}
    for pod in pods:
        pool = pools.by_node.get(pod.node)
        if pool is not None and holds_at(pod, t):
            by_pool[pool.name] = by_pool.get(pool.name, 0.0) + pod.gpus
    return [Allocation(workload, p, g, labels) for p, g in sorted(by_pool.items())]


def holdings(pods: Iterable[GpuPod], pools: Pools, start: datetime, end: datetime) -> list[Holding]:
    """What each pod held over ``[start, end)``, by pool, for ``core.cost.charge``."""
    out = []
    for pod in pods:
        pool = pools.by_node.get(pod.node)
        seconds = held_seconds(pod, start, end)
        out.append(Holding(pool.name if pool else None, pod.gpus, seconds, holds_at(pod, end)))
    return out
