"""Idle GPU node shutdown: one task per GPU node, pods and PDBs from Kopf indexes.

Each node's daemon keeps its idle timer in a node annotation, checks every
safety rule of ``core.idle`` and, within the pool's disruption budget, walks
the resumable shutdown: taint, drain through the Eviction API, shut down.
Progress is recorded on the node before each step, so a restarted operator
resumes (or un-taints a node that got work meanwhile).
"""

import asyncio
import time
from typing import Any

import kopf

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.nodes import (
    IDLE_SINCE,
    NodeActions,
    node_snapshot,
    pod_record,
    pod_snapshot,
    pool_of,
)
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.utilization import node_peak_gpu_utilization
from gpufinops.config.model import IdleShutdownDefaults, NodePool, OperatorConfig
from gpufinops.core.clock import moved_with_the_clock
from gpufinops.core.idle.model import IDLE_TAINT
from gpufinops.core.idle.plan import still_safe
from gpufinops.core.idle.rules import (
    IdleTimer,
    blockers,
    disruption_allowance,
    gpu_workload_pods,
    is_idle,
)
from gpufinops.core.idle.shutdown import PHASE_ANNOTATION, Phase, Step, next_step, phase_after
from gpufinops.core.scaling.schedule import window_open
from gpufinops.handlers.clock import ClockSteps, Reading

DRAIN_STARTED = "gpufinops.dev/drain-started"


@kopf.index("", "v1", "pods")
def pods_by_node(body: kopf.Body, spec: kopf.Spec, **_: Any) -> dict[str, dict[str, Any]]:
    node = spec.get("nodeName")
    return {node: pod_record(body)} if node else {}


@kopf.index("policy", "v1", "poddisruptionbudgets")
def pdbs(
    namespace: str | None, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[str | None, dict[str, Any]]:
    return {
        namespace: {
            "namespace": namespace,
            "selector": spec.get("selector"),
            "disruptions_allowed": status.get("disruptionsAllowed", 0),
        }
    }


@kopf.index("", "v1", "nodes")
def nodes_by_pool(
    name: str, body: kopf.Body, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> dict[str, dict[str, Any]]:
    pool = pool_of(labels, memo.config.node_pools)
    if pool is None:
        return {}
    return {pool.name: {"name": name, "body": dict(body)}}


def _settings(labels: Any, memo: kopf.Memo) -> tuple[NodePool, IdleShutdownDefaults] | None:
    config: OperatorConfig = memo.config
    pool = pool_of(labels, config.node_pools)
    if pool is None:
        return None
    settings = config.idle_shutdown_for(pool)
    return (pool, settings) if settings.enabled else None


def _is_managed_gpu_node(labels: Any, memo: kopf.Memo, **_: Any) -> bool:
    return _settings(labels, memo) is not None


def _in_window(settings: IdleShutdownDefaults, now: float) -> bool:
    if not settings.schedule:
        return True
    return any(window_open(w.cron, w.timezone, w.duration_seconds, now) for w in settings.schedule)


@kopf.on.event("", "v1", "nodes")
async def track_node(
    name: str,
    type: str | None,
    body: kopf.Body,
    labels: kopf.Labels,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **indexes: Any,
) -> None:
    """Keep one idle-watch task per managed GPU node.

    A plain task fed by watch events, not a Kopf daemon: daemons put a
    finalizer on their object, and a finalizer on Nodes would block their
    deletion by anyone else whenever the operator is down.
    """
    if not getattr(memo, "clusterwide", True):
        return  # node duties are another instance's (namespaced, or --no-node-duties)
    memo.idle_indexes = {k: indexes[k] for k in ("pods_by_node", "pdbs", "nodes_by_pool")}
    tasks: dict[str, asyncio.Task[None]] = memo.idle_tasks
    if type == "DELETED" or not _is_managed_gpu_node(labels, memo):
        memo.node_bodies.pop(name, None)
        task = tasks.pop(name, None)
        if task is not None:
            task.cancel()
        return
    memo.node_bodies[name] = dict(body)
    if name not in tasks or tasks[name].done():
        tasks[name] = asyncio.get_running_loop().create_task(_watch_node(name, memo, logger))


@kopf.on.cleanup()
async def stop_idle_tasks(memo: kopf.Memo, **_: Any) -> None:
    for task in list(memo.idle_tasks.values()):
        task.cancel()
    memo.idle_tasks.clear()


async def _watch_node(name: str, memo: kopf.Memo, logger: kopf.Logger) -> None:
    """Watch one GPU node; shut it down once idle long enough and safe to remove."""
    actions = NodeActions(memo.api)
    clock = ClockSteps()
    clock.read()
    while name in memo.node_bodies:
        body = memo.node_bodies[name]
        labels = body.get("metadata", {}).get("labels") or {}
        found = _settings(labels, memo)
        if found is None:
            return
        pool, settings = found
        reading = clock.read()
        try:
            await _tick(name, body, pool, settings, actions, memo, memo.idle_indexes, reading)
        except Exception as exc:
            logger.warning(f"idle shutdown of {name} failed, retrying next interval: {exc}")
        await asyncio.sleep(settings.interval_seconds)


async def _tick(
    name: str,
    body: Any,
    pool: NodePool,
    settings: IdleShutdownDefaults,
    actions: NodeActions,
    memo: kopf.Memo,
    indexes: dict[str, Any],
    reading: Reading,
) -> None:
    # Wall-clock instants (the timer, the drain start) move with a clock step;
    # the idle GPU time counted is the time that really passed.
    now, stepped, elapsed = reading
    pdb_list = [p for values in indexes["pdbs"].values() for p in values]
    pods = [pod_snapshot(r, pdb_list) for r in indexes["pods_by_node"].get(name, [])]
    node = node_snapshot(body, pool.name)
    annotations = node.annotations
    timer = IdleTimer(float(annotations[IDLE_SINCE]) if IDLE_SINCE in annotations else None)
    low = await _utilization_low(name, settings, memo, elapsed)
    idle = is_idle(pods, low)
    updated = timer.observe(idle, now, stepped=stepped)
    if idle:
        metrics.IDLE_GPU_SECONDS.labels(pool.name).inc(node.gpus * elapsed)
        metrics.IDLE_COST.labels(pool.name).inc(
            node.gpus * elapsed / 3600 * pool.gpu_hourly_price_usd
        )
    if updated.since != timer.since:
        value = None if updated.since is None else f"{updated.since:.3f}"
        await asyncio.to_thread(actions.annotate, name, {IDLE_SINCE: value})
        if updated.since is not None:
            why = (
                f"every GPU below {settings.gpu_utilization_below_percent:g} % utilisation"
                if low and gpu_workload_pods(pods)
                else "no GPU pod on the node"
            )
            kopf.event(
                body,
                type="Normal",
                reason="IdleDetected",
                message=f"{why}; shutdown after {settings.idle_after_seconds}s if it stays idle",
            )

    phase = Phase(annotations.get(PHASE_ANNOTATION, ""))
    if phase == Phase.NONE:
        if not updated.expired(settings.idle_after_seconds, now) or not _in_window(settings, now):
            return
        if blockers(node, pods):
            return
        async with memo.idle_lock:
            if not await _claim(name, pool, settings, memo, indexes, actions, body):
                return
        phase = Phase.TAINTED
    await _advance(name, body, node, pods, phase, pool, settings, actions, now, low, stepped)


async def _utilization_low(
    name: str, settings: IdleShutdownDefaults, memo: kopf.Memo, elapsed: float
) -> bool | None:
    """Whether every GPU of the node stayed below the threshold since the last look.

    None without a threshold; False when unknown (a failed or empty query): missing
    data never makes a node idle.
    """
    threshold = settings.gpu_utilization_below_percent
    prometheus: PrometheusClient | None = getattr(memo, "prometheus", None)
    if threshold is None:
        return None
    if prometheus is None:
        return False
    # The window covers the time since the last look (and at least a scrape or two).
    window = max(elapsed + settings.interval_seconds, 60.0)
    try:
        peak = await asyncio.to_thread(
            node_peak_gpu_utilization, prometheus, settings.gpu_utilization_node_label,
            name, window,
        )  # fmt: skip
    except MetricsError:
        return False
    return peak < threshold


async def _claim(
    name: str,
    pool: NodePool,
    settings: IdleShutdownDefaults,
    memo: kopf.Memo,
    indexes: dict[str, Any],
    actions: NodeActions,
    body: Any,
) -> bool:
    """Take one unit of the pool's disruption budget, by recording the first phase."""
    members = [
        node_snapshot(n["body"], pool.name) for n in indexes["nodes_by_pool"].get(pool.name, [])
    ]
    # Claims made moments ago by other nodes' daemons may not be in the index yet.
    recent = memo.idle_claims.setdefault(pool.name, {})
    now = time.time()
    claimed = {n for n, at in recent.items() if now - at < 2 * settings.interval_seconds + 5}
    claimed |= {n.name for n in members if n.annotations.get(PHASE_ANNOTATION) or n.being_deleted}
    allowed = disruption_allowance(
        len(members),
        max_percent=settings.max_percent,
        max_nodes=settings.max_nodes_per_interval,
        deleting=len(claimed - {name}),
        not_ready=sum(1 for n in members if not n.ready and n.name not in claimed),
    )
    if allowed <= 0:
        return False
    if settings.dry_run:
        kopf.event(
            body,
            type="Normal",
            reason="IdleShutdownDryRun",
            message="idle and safe to shut down; dryRun is on, so nothing is done",
        )
        return False
    await asyncio.to_thread(actions.annotate, name, {PHASE_ANNOTATION: Phase.TAINTED.value})
    recent[name] = now
    await asyncio.to_thread(actions.set_taint, name, True)
    return True


async def _advance(
    name: str,
    body: Any,
    node: Any,
    pods: list[Any],
    phase: Phase,
    pool: NodePool,
    settings: IdleShutdownDefaults,
    actions: NodeActions,
    now: float,
    utilization_low: bool | None = None,
    stepped: float = 0.0,
) -> None:
    safe, reasons = still_safe(node, pods, utilization_low)
    evictable = [p for p in pods if not p.terminal and not p.daemonset]
    recorded = node.annotations.get(DRAIN_STARTED)
    drain_started = float(recorded) if recorded else now
    moved = moved_with_the_clock(drain_started, stepped, now)
    if phase == Phase.DRAINING and recorded and moved is not None and moved != drain_started:
        drain_started = moved
        await asyncio.to_thread(actions.annotate, name, {DRAIN_STARTED: f"{moved:.3f}"})
    if phase == Phase.DRAINING and now - drain_started > settings.drain_timeout_seconds:
        safe, reasons = False, [f"drain did not finish in {settings.drain_timeout_seconds:.0f}s"]
    step = next_step(phase, safe=safe, drained=not evictable)
    # Killed between recording Tainted and tainting, the node is not tainted yet:
    # taint it before draining, or the evicted pods' replacements may land back on it.
    untainted = phase in (Phase.TAINTED, Phase.DRAINING) and not _has_idle_taint(body)
    if step == Step.TAINT or (untainted and step in (Step.DRAIN, Step.WAIT, Step.SHUT_DOWN)):
        await asyncio.to_thread(actions.set_taint, name, True)
    if step == Step.TAINT:
        step = Step.DRAIN
    if step == Step.ABORT:
        await asyncio.to_thread(actions.set_taint, name, False)
        await asyncio.to_thread(
            actions.annotate, name, {PHASE_ANNOTATION: None, DRAIN_STARTED: None, IDLE_SINCE: None}
        )
        kopf.event(body, type="Warning", reason="ShutdownAborted", message="; ".join(reasons))
        return
    if step in (Step.DRAIN, Step.WAIT):
        if phase != Phase.DRAINING:
            await asyncio.to_thread(
                actions.annotate,
                name,
                {
                    PHASE_ANNOTATION: phase_after(Step.DRAIN, phase).value,
                    DRAIN_STARTED: f"{now:.3f}",
                },
            )
            kopf.event(
                body,
                type="Normal",
                reason="Draining",
                message=f"evicting {len(evictable)} pod(s) before shutdown",
            )
        for pod in evictable:
            await asyncio.to_thread(actions.evict, pod.namespace, pod.name)
        if evictable:
            return
        step = Step.SHUT_DOWN
    if step == Step.SHUT_DOWN:
        await asyncio.to_thread(
            actions.annotate, name, {PHASE_ANNOTATION: Phase.SHUTTING_DOWN.value}
        )
        # Shielded: the node's deletion reaches the watch (and cancels this task)
        # before the thread returns; the count and the Event must still be recorded.
        await asyncio.shield(_shut_down(name, body, pool, settings, actions))


def _has_idle_taint(body: Any) -> bool:
    taints = (body.get("spec") or {}).get("taints") or []
    return any(t.get("key") == IDLE_TAINT for t in taints)


async def _shut_down(
    name: str, body: Any, pool: NodePool, settings: IdleShutdownDefaults, actions: NodeActions
) -> None:
    await asyncio.to_thread(actions.shut_down, name, settings.provider)
    metrics.NODES_SHUT_DOWN.labels(pool.name).inc()
    kopf.event(
        body,
        type="Normal",
        reason="ShutDown",
        message=f"idle GPU node shut down via the {settings.provider} provider",
    )
