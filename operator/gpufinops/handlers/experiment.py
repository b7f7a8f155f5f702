"""Kopf wiring of Experiment sandboxes: targets and their GPU pods from indexes, the
GPU utilisation from Prometheus (DCGM), one daemon per Experiment workload."""

import asyncio
from typing import Any

import kopf

from gpufinops.adapters.deployments import scale_deployment, scale_statefulset
from gpufinops.adapters.jobs import JobActions, JobView, pod_template_gpus
from gpufinops.adapters.prometheus.client import MetricsError
from gpufinops.adapters.prometheus.utilization import peak_gpu_utilization
from gpufinops.api.experiment import Experiment
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.controllers.clock import Reading
from gpufinops.controllers.experiment import ExperimentController, ExperimentEffects
from gpufinops.core.experiment import ExperimentObservation
from gpufinops.handlers.aiworkload import Rivals
from gpufinops.handlers.context import context_of
from gpufinops.handlers.events import poster
from gpufinops.handlers.indexes import first, namespace_view
from gpufinops.handlers.loop import SKIPPED, SpecChecks, run_loop
from gpufinops.handlers.status_writes import ConditionalStatus, created_at


@kopf.index("apps", "v1", "statefulsets")
def statefulsets(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[tuple[str | None, str], tuple[int, int]]:
    replicas = spec.get("replicas")
    return {(namespace, name): (1 if replicas is None else int(replicas),
                                int(meta.get("generation") or 0))}  # fmt: skip


def _owner_workload(meta: kopf.Meta, labels: kopf.Labels) -> str | None:
    """The Deployment, StatefulSet or Job a pod belongs to (a ReplicaSet's name is the
    Deployment's plus ``-<pod-template-hash>``)."""
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        kind, name = ref.get("kind"), str(ref.get("name"))
        if kind == "ReplicaSet":
            suffix = "-" + str(labels.get("pod-template-hash", ""))
            return name[: -len(suffix)] if name.endswith(suffix) else name
        if kind in ("StatefulSet", "Job"):
            return name
    return None


@kopf.index("", "v1", "pods")
def gpu_pods_by_owner(
    namespace: str | None,
    meta: kopf.Meta,
    labels: kopf.Labels,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[tuple[str | None, str], str]:
    """Running pods that hold GPUs, by the workload object that owns them."""
    if status.get("phase") != "Running" or meta.get("deletionTimestamp"):
        return {}
    if pod_template_gpus(dict(spec)) <= 0:
        return {}
    owner = _owner_workload(meta, labels)
    return {(namespace, owner): str(meta.get("name"))} if owner else {}


def _is_experiment(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("type") == "Experiment"


def _target(
    experiment: Experiment, namespace: str, indexes: dict[str, Any]
) -> tuple[bool, int, int] | None:
    """(running, replicas, generation) of the target, or None when it does not exist."""
    ref = experiment.target_ref
    key = (namespace, ref.name)
    if ref.kind == "Deployment":
        view = first(indexes["deployments"], key)
        return None if view is None else (view.replicas > 0, view.replicas, view.generation)
    if ref.kind == "StatefulSet":
        found = first(indexes["statefulsets"], key)
        return None if found is None else (found[0] > 0, found[0], found[1])
    job: JobView | None = first(indexes["training_jobs"], key)
    if job is None:
        return None
    return (not job.suspended and not job.complete, job.parallelism, job.generation)


@kopf.daemon(GROUP, VERSION, PLURAL, when=_is_experiment, cancellation_timeout=10.0)
async def watch_experiment(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **indexes: Any,
) -> None:
    """Tick until the workload is deleted or stops being an Experiment."""
    assert namespace is not None
    context = context_of(memo)
    config, api, prometheus = context.config, context.api, context.prometheus
    write_status = ConditionalStatus(api, namespace, name)

    post_event = poster(body)

    current: dict[str, Experiment] = {}
    rivals = Rivals(namespace, name, post_event)

    def shut_down() -> None:
        ref = current["experiment"].target_ref
        if ref.kind == "Deployment":
            scale_deployment(api, namespace, ref.name, 0)
        elif ref.kind == "StatefulSet":
            scale_statefulset(api, namespace, ref.name, 0)
        else:
            JobActions(api).suspend(namespace, ref.name)

    controller = ExperimentController(
        namespace, name, created_at(meta), ExperimentEffects(shut_down, write_status, post_event)
    )
    checks = SpecChecks(config)

    async def tick(clock: Reading) -> str | None:
        spec = checks.of(body, namespace_view(indexes, namespace)).spec
        if spec is None or spec.experiment is None:
            return SKIPPED
        experiment = current["experiment"] = spec.experiment
        ref = experiment.target_ref
        if rivals.block(indexes, ref.kind, ref.name):
            return SKIPPED
        target = _target(experiment, namespace, indexes)
        if target is None:
            return SKIPPED
        running, replicas, generation = target
        pods = len(indexes["gpu_pods_by_owner"].get((namespace, ref.name), []))
        utilization = None
        if experiment.idle.gpu_utilization_below_percent is not None and prometheus:
            try:
                utilization = await asyncio.to_thread(
                    peak_gpu_utilization, prometheus, namespace, ref.kind, ref.name,
                    max(2 * context.sync_seconds, 60.0),
                )  # fmt: skip
            except MetricsError as exc:
                logger.info(f"GPU utilisation unknown, idle timer holds: {exc}")
        obs = ExperimentObservation(running, replicas, pods, utilization)
        write_status.seen(body)
        await asyncio.to_thread(
            controller.tick, spec, obs, body.get("status"), clock.now, generation, clock.stepped
        )
        return None

    await run_loop(
        tick, lambda: context.sync_seconds, what="experiment tick", logger=logger,
        stopped=stopped,
    )  # fmt: skip
