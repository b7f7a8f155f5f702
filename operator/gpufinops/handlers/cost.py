"""GPU spend per workload: one operator-wide loop accrues it into status.cost and budgets.

Every ``cost.intervalSeconds`` the loop charges each AIWorkload for the
GPU-seconds its pods held since ``status.cost.lastAccountedTime`` (the pure
``core.cost`` does the calendar arithmetic), decides budget alerts and
enforcement, and writes ``status.cost``, ``status.budget`` and (every few minutes, when
they change) ``status.recommendations`` with a merge patch holding only those:
the autoscaler owns the conditions list, which a merge patch would replace
whole.

Pods, nodes and workloads come from Kopf indexes, so a tick costs no LIST;
the loop is one task for the whole operator, started from the first
AIWorkload or node event because only resource handlers receive indexes.
"""

import asyncio
import functools
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client

from gpufinops.adapters.alert_queue import AlertQueue, deadline_for
from gpufinops.adapters.alerts import AlertSender
from gpufinops.adapters.allocations import (
    GpuPod,
    Pools,
    gpu_pod,
    gpu_pod_record,
    pool_node_record,
    through_jobsets,
)
from gpufinops.adapters.ledger import SpendLedger
from gpufinops.adapters.nodes import pool_of
from gpufinops.adapters.prometheus.batch import PrometheusVectors, Selector, VectorSource
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.presets import PRESETS, ScopeLabels
from gpufinops.adapters.prometheus.shared import SharedVector
from gpufinops.adapters.prometheus.utilization import GPU_UTIL, peak_gpu_utilization
from gpufinops.adapters.scale_targets import TargetView
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.clock import Reading
from gpufinops.controllers.cost import (
    CostAccountant,
    CostEffects,
    MeanUtilization,
    TokenRate,
    Utilization,
    WorkloadView,
)
from gpufinops.core.cost.unit_economics import ServedRates
from gpufinops.core.gpus import rules_of
from gpufinops.core.tenancy import booked_spec
from gpufinops.handlers.context import OperatorContext, context_of
from gpufinops.handlers.events import post
from gpufinops.handlers.indexes import namespace_view
from gpufinops.handlers.loop import run_loop

logger = logging.getLogger(__name__)

TOKEN_RATE_WINDOW = "5m"
"""Long enough to smooth bursts of long generations, short enough to follow the load."""

_INDEXES = (
    "gpu_pods", "cost_workloads", "pool_nodes", "deployments", "namespace_labels",
    "jobset_children",
)  # fmt: skip


# Async, like the autoscaler's indexes: no worker thread per watch event.
@kopf.index("", "v1", "pods")
async def gpu_pods(
    namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> dict[str | None, Any]:
    record = gpu_pod_record(body, rules_of(context_of(memo).config))
    return {namespace: record} if record is not None else {}


@kopf.index(GROUP, VERSION, PLURAL)
async def cost_workloads(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], WorkloadView]:
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    return {
        (namespace, name): WorkloadView(
            namespace=namespace or "",
            name=name,
            ref={
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid")},
            },
            spec=dict(body.get("spec") or {}),
            cost=dict(status.get("cost") or {}),
            budget=dict(status.get("budget") or {}),
            recommendations=(
                [dict(r) for r in status["recommendations"]]
                if isinstance(status.get("recommendations"), list)
                else None
            ),
            observed_usage=(
                dict(status["observedUsage"])
                if isinstance(status.get("observedUsage"), dict)
                else None
            ),
            spend_history=(
                dict(status["spendHistory"])
                if isinstance(status.get("spendHistory"), dict)
                else None
            ),
            desired_replicas=_desired(status),
        )
    }


def _desired(status: Mapping[str, Any]) -> int | None:
    replicas = status.get("replicas")
    desired = replicas.get("desired") if isinstance(replicas, dict) else None
    return desired if isinstance(desired, int) and desired >= 0 else None


@kopf.index("", "v1", "nodes")
async def pool_nodes(
    name: str, labels: kopf.Labels, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> dict[str, dict[str, Any]]:
    pool = pool_of(labels, context_of(memo).config.node_pools)
    if pool is None:
        return {}
    allocatable = status.get("allocatable") or {}
    return {
        pool.name: pool_node_record(name, labels, allocatable, rules_of(context_of(memo).config))
    }


def _ensure_loop(memo: kopf.Memo, indexes: Mapping[str, Any]) -> None:
    shared = context_of(memo).shared
    shared.cost_indexes = {k: indexes[k] for k in _INDEXES if k in indexes}
    task = shared.cost_task
    if task is None or task.done():
        # Created inside a handler, the task inherits Kopf's context (Events work).
        shared.cost_task = asyncio.get_running_loop().create_task(_run(context_of(memo)))


def _loop_missing(memo: kopf.Memo, **_: Any) -> bool:
    """Whether the loop still has to be started (or restarted): the event handlers below
    run only then. Every status write is a watch event; a handler invoked (and logged)
    for each of them would only find the loop already running."""
    task = context_of(memo).shared.cost_task
    return task is None or task.done()


@kopf.on.event(GROUP, VERSION, PLURAL, when=_loop_missing)
async def cost_on_workload(memo: kopf.Memo, **indexes: Any) -> None:
    _ensure_loop(memo, indexes)


@kopf.on.event("", "v1", "nodes", when=_loop_missing)
async def cost_on_node(memo: kopf.Memo, **indexes: Any) -> None:
    _ensure_loop(memo, indexes)


@kopf.on.cleanup()
async def stop_cost_loop(memo: kopf.Memo, **_: Any) -> None:
    task = context_of(memo).shared.cost_task
    if task is not None:
        task.cancel()


def _values(index: Any) -> Iterable[Any]:
    for key in list(index or {}):
        yield from index.get(key, [])


def alert_queue(config: OperatorConfig) -> AlertQueue:
    """The background delivery of budget alerts to the configured endpoints."""
    sender = AlertSender(config.alerting)
    return AlertQueue(sender.send, deadline=deadline_for(config.alerting.timeout_seconds))


def _effects(context: OperatorContext, alerts: AlertQueue) -> CostEffects:
    custom = client.CustomObjectsApi(context.api)

    def write_status(namespace: str, name: str, patch: dict[str, Any]) -> None:
        # No resourceVersion: the patch holds only dict fields this loop owns, which
        # a merge patch merges key by key, so nobody else's writes can be lost.
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": patch}
        )

    # A plain mapping with apiVersion, kind and metadata is all an Event reference needs.
    return CostEffects(write_status, post, alerts.enqueue)


def _by_pod(names: set[str]) -> str:
    """The rate of any of ``names`` per pod: a pod exports its own engine's names."""
    regex = "|".join(sorted(names))
    return f'sum by (namespace, pod) (rate({{__name__=~"{regex}"}}[{TOKEN_RATE_WINDOW}]))'


INPUT_TOKENS_BY_POD = _by_pod({p.prompt_tokens for p in PRESETS.values() if p.prompt_tokens})
OUTPUT_TOKENS_BY_POD = _by_pod(
    {p.generation_tokens for p in PRESETS.values() if p.generation_tokens}
)
REQUESTS_BY_POD = _by_pod({p.completions for p in PRESETS.values() if p.completions})
"""What every workload served, each from one query per cost pass, whatever its engine."""
UTILIZATION_BY_GPU = f"avg_over_time({GPU_UTIL}[{TOKEN_RATE_WINDOW}])"
"""``mean_utilization_query`` for every GPU at once (per series: the mean is over GPUs)."""
_POD_LABELS = ScopeLabels(model=None)


@functools.lru_cache(maxsize=8192)
def _selector(namespace: str, name: str, kind: str = "Deployment") -> Selector:
    return Selector(namespace, name, None, kind)


def _shared(config: OperatorConfig, query: str, source: VectorSource | None) -> SharedVector:
    if source is None:
        prometheus = PrometheusClient.from_config(config.prometheus)
        source = PrometheusVectors(prometheus, kind="cost_batch")
    # Half an interval: a pass reads each vector once, the next pass afresh.
    return SharedVector(source, query, _POD_LABELS, ttl=config.cost.interval_seconds / 2)


def _token_rate(config: OperatorConfig, source: VectorSource | None = None) -> TokenRate:
    """Input and output tokens and requests per second of a workload's pods, each from
    one query for every workload per pass."""
    shared = {
        "input_tokens": _shared(config, INPUT_TOKENS_BY_POD, source),
        "output_tokens": _shared(config, OUTPUT_TOKENS_BY_POD, source),
        "requests": _shared(config, REQUESTS_BY_POD, source),
    }

    def read(namespace: str, spec: AIWorkloadSpec) -> ServedRates | None:
        inference = spec.inference
        if inference is None:
            return None
        ref = inference.target_ref
        rates: dict[str, float | None] = {}
        for name, vector in shared.items():
            try:
                values = vector.values(_selector(namespace, ref.name, ref.kind))
            except MetricsError:
                values = []  # no figure is better than a wrong one; spend is still accounted
            total = sum(values)
            rates[name] = total if values and math.isfinite(total) else None
        if all(v is None for v in rates.values()):
            return None
        return ServedRates(**rates)

    return read


def _mean_utilization(
    config: OperatorConfig, source: VectorSource | None = None
) -> MeanUtilization:
    """Mean DCGM utilisation of a scaled object's GPUs, from one query for every GPU per
    pass."""
    gpus = _shared(config, UTILIZATION_BY_GPU, source)

    def read(namespace: str, kind: str, name: str) -> float | None:
        try:
            values = gpus.values(_selector(namespace, name, kind))
        except MetricsError:
            return None  # without DCGM there is no usage basis; allocation still shows
        mean = sum(values) / len(values) if values else None
        return mean if mean is not None and math.isfinite(mean) else None

    return read


def _utilization(config: OperatorConfig) -> Utilization:
    prometheus = PrometheusClient.from_config(config.prometheus)

    def read(namespace: str, kind: str, name: str, window_seconds: float) -> float | None:
        try:
            return peak_gpu_utilization(prometheus, namespace, kind, name, window_seconds)
        except MetricsError:
            return None  # without DCGM the rules that need utilisation stay silent

    return read


def held_gpus(config: OperatorConfig, indexes: Mapping[str, Any]) -> tuple[list[GpuPod], Pools]:
    """The pods holding GPUs and the pools' nodes, from the ``gpu_pods`` and ``pool_nodes``
    indexes; each pod's GPUs are counted on its node (a shared unit: 1/replicas there)."""
    rules = rules_of(config)
    nodes = indexes.get("pool_nodes") or {}
    pools = Pools.of(((p, n) for p in config.node_pools for n in nodes.get(p.name, [])), rules)
    pods = [
        gpu_pod(r, rules, pools.labels.get(r["node"])) for r in _values(indexes.get("gpu_pods"))
    ]
    jobs = indexes.get("jobset_children") or {}
    if jobs:
        # Child Job -> its JobSet, from the JobSets' index of the Jobs they control.
        parents = {(ns, child): jobset for (ns, jobset), children in jobs.items()
                   for child, _, _ in children}  # fmt: skip
        pods = through_jobsets(pods, lambda ns, job: parents.get((ns, job)))
    return pods, pools


def booked(views: Iterable[WorkloadView], indexes: Mapping[str, Any]) -> list[WorkloadView]:
    """Each workload as its cost is booked: to its namespace's team (``core.tenancy``)."""
    return [
        replace(v, spec=booked_spec(v.spec, namespace_view(indexes, v.namespace))) for v in views
    ]


def _ledger(context: OperatorContext, config: OperatorConfig) -> SpendLedger | None:
    """The spend ledger in ``cost.ledgerNamespace`` (else the operator's own namespace)."""
    namespace = config.cost.ledger_namespace or os.environ.get("POD_NAMESPACE")
    if not namespace:
        logger.warning(
            "no spend ledger (set cost.ledgerNamespace): status.cost is the only record "
            "of spend, and a workload deleted and created again starts its month at $0"
        )
        return None
    logger.info("spend ledger in namespace %s", namespace)
    return SpendLedger(context.api, namespace)


async def _run(context: OperatorContext) -> None:
    config = context.config
    alerts = alert_queue(config)
    try:
        await _passes(context, config, alerts)
    finally:
        alerts.close()  # what is queued is still delivered; nothing waits for it


async def _passes(context: OperatorContext, config: OperatorConfig, alerts: AlertQueue) -> None:
    """One cost pass every ``cost.intervalSeconds``, until cancelled."""
    accountant = CostAccountant(
        config, _effects(context, alerts), _token_rate(config), _utilization(config),
        _mean_utilization(config), ledger=_ledger(context, config),
    )  # fmt: skip
    if not context.clusterwide:
        logger.info("namespaced operator: unallocated GPU cost is not measured")

    async def tick(clock: Reading) -> None:
        indexes = context.shared.cost_indexes
        pods, pools = held_gpus(config, indexes)
        deployments = indexes.get("deployments") or {}

        def replicas(namespace: str, name: str) -> int | None:
            view: TargetView | None = next(iter(deployments.get((namespace, name), [])), None)
            return view.replicas if view is not None else None

        await accountant.tick(
            datetime.fromtimestamp(clock.now, tz=UTC),
            booked(_values(indexes.get("cost_workloads")), indexes),
            pods,
            pools,
            replicas,
            measure_unallocated=context.clusterwide,
        )

    await run_loop(
        tick, lambda: config.cost.interval_seconds, what="cost accounting pass", logger=logger
    )
