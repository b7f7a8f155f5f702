"""Kopf wiring of Training placement: Jobs, their pods and node taints from indexes,
one daemon per Training workload.

The indexes make a tick cost no LIST: Jobs and JobSets by name, a JobSet's child
Jobs, pods by the Job that owns them (their controller ownerReference, never a
label anyone can copy onto a pod),
and the taint keys of every node (a spot interruption notice is a taint; a pod
whose node is missing from the index lost its node).
"""

import asyncio
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import kopf

from gpufinops.adapters.jobs import (
    JOBSET_GROUP,
    JOBSET_VERSION,
    JobActions,
    JobSetActions,
    JobView,
    PodView,
    job_of_pod,
    job_view,
    jobset_view,
    pod_view,
)
from gpufinops.adapters.nodes import pool_of
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.config.model import CapacityType
from gpufinops.controllers.clock import Reading
from gpufinops.controllers.training import TrainingController, World
from gpufinops.core.placement.interruptions import interruption_reason
from gpufinops.core.placement.lifecycle import job_kind, job_name
from gpufinops.handlers.aiworkload import Rivals
from gpufinops.handlers.context import context_of
from gpufinops.handlers.events import poster
from gpufinops.handlers.indexes import first, namespace_view
from gpufinops.handlers.loop import SKIPPED, SpecChecks, run_loop
from gpufinops.handlers.status_writes import ConditionalStatus, created_at


@kopf.index("batch", "v1", "jobs")
def training_jobs(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], JobView]:
    return {(namespace, name): job_view(body)}


@kopf.index(JOBSET_GROUP, JOBSET_VERSION, "jobsets")
async def training_jobsets(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], JobView]:
    """JobSets by name (none when the JobSet CRD is not installed)."""
    return {(namespace, name): jobset_view(body)}


@kopf.index("batch", "v1", "jobs")
async def jobset_children(
    namespace: str | None, name: str, meta: kopf.Meta, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], tuple[str, str, str]]:
    """The child Jobs of each JobSet, (name, uid, JobSet uid), from their controller
    ownerReference: a JobSet's pods are the pods of the Jobs it controls."""
    view = job_view(body)
    if view.jobset is None:
        return {}
    return {(namespace, view.jobset[0]): (name, view.uid, view.jobset[1])}


def target_pods(
    indexes: Mapping[str, Any], namespace: str, name: str, job: JobView | None
) -> tuple[list[PodView], frozenset[str] | None]:
    """The pods of Job ``name``, or of JobSet ``job``'s child Jobs with the uids they count
    under (None: the Job's own uid, which the controller checks)."""
    pods_index: kopf.Index[Any, PodView] = indexes["job_pods"]
    if job is None or job.kind != "JobSet":
        return list(pods_index.get((namespace, name), [])), None
    children = [
        c for c in indexes["jobset_children"].get((namespace, job.name), []) if c[2] == job.uid
    ]
    pods = [p for child, _, _ in children for p in pods_index.get((namespace, child), [])]
    return pods, frozenset(uid for _, uid, _ in children)


# Every pod event comes here (no label filter: the owner is what counts, and a pod keeps
# it whatever happens to its labels), so it is async: no worker thread per event.
@kopf.index("", "v1", "pods")
async def job_pods(
    namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], PodView]:
    """Pods by the Job that controls them; a pod no Job controls is in no entry (an empty
    result also drops it from the entry it had, should it lose its ownerReference)."""
    job = job_of_pod(meta)
    return {} if job is None else {(namespace, job[0]): pod_view(body)}


@kopf.index("", "v1", "nodes")
def node_taints(name: str, spec: kopf.Spec, **_: Any) -> dict[str, tuple[str, ...]]:
    return {name: tuple(str(t.get("key")) for t in spec.get("taints") or [])}


@kopf.index("", "v1", "nodes")
def spot_pool_nodes(
    name: str,
    labels: kopf.Labels,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    **_: Any,
) -> dict[str, bool]:
    """Per spot pool, whether each of its nodes could take a job now: Ready,
    schedulable, and without an interruption notice (the deadline rule's view of spot
    capacity; nodes appearing, tainted and going are what it follows)."""
    pool = pool_of(labels, context_of(memo).config.node_pools)
    if pool is None or pool.capacity_type != CapacityType.SPOT:
        return {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    taints = [str(t.get("key")) for t in spec.get("taints") or []]
    usable = ready and not spec.get("unschedulable") and interruption_reason(taints) is None
    return {pool.name: usable}


def spot_capacity(index: kopf.Index[str, bool]) -> dict[str, bool]:
    """Per spot pool with nodes, whether any of them could take a job now."""
    return {pool: any(index[pool]) for pool in index}


class NodeTaints(Mapping[str, Sequence[str]]):
    """The node index as the plain mapping the controller reads (no copy per tick)."""

    def __init__(self, index: kopf.Index[str, tuple[str, ...]]) -> None:
        self._index = index

    def __getitem__(self, node: str) -> Sequence[str]:
        for taints in self._index[node]:
            return taints
        return ()

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def _is_training(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("type") == "Training"


@kopf.daemon(GROUP, VERSION, PLURAL, when=_is_training, cancellation_timeout=10.0)
async def place_training(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    uid: str,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **indexes: Any,
) -> None:
    """Tick until the workload is deleted or stops being a Training workload."""
    assert namespace is not None
    jobs_index: kopf.Index[Any, JobView] = indexes["training_jobs"]
    jobsets_index: kopf.Index[Any, JobView] = indexes["training_jobsets"]
    taints_index: kopf.Index[str, tuple[str, ...]] = indexes["node_taints"]
    context = context_of(memo)
    config, api = context.config, context.api
    write_status = ConditionalStatus(api, namespace, name)

    post_event = poster(body)

    controller = TrainingController(
        namespace, name, uid, config, JobActions(api), write_status, post_event,
        jobsets=JobSetActions(api),
    )  # fmt: skip
    created = created_at(meta)
    rivals = Rivals(namespace, name, post_event)
    checks = SpecChecks(config)

    async def tick(clock: Reading) -> str | None:
        spec = checks.of(body, namespace_view(indexes, namespace)).spec
        if spec is None or spec.training is None:
            return SKIPPED
        if rivals.block(indexes, job_kind(spec), job_name(name, spec)):
            return SKIPPED
        job = job_name(name, spec)
        index = jobsets_index if job_kind(spec) == "JobSet" else jobs_index
        target = first(index, (namespace, job))
        pods, owners = target_pods(indexes, namespace, job, target)
        write_status.seen(body)
        world = World(
            job=target,
            pods=pods,
            pod_owners=owners,
            node_taints=NodeTaints(taints_index),
            latest_status=copy.deepcopy(body.get("status")),
            generation=body.get("metadata", {}).get("generation"),
            created_at=created,
            now=clock.now,
            stepped=clock.stepped,
            spot_capacity=spot_capacity(indexes["spot_pool_nodes"]),
            period_seconds=context.sync_seconds,
        )
        await asyncio.to_thread(controller.tick, spec, world)
        return None

    await run_loop(
        tick, lambda: context.sync_seconds, what="placement tick", logger=logger, stopped=stopped
    )
