"""Kopf wiring of idle GPU node shutdown: node bodies from the watch, pods and PDBs from
indexes, one loop (a plain task) per pool; ``controllers.idle_nodes`` does the work."""

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from gpufinops.adapters.nodes import NodeActions, pod_record
from gpufinops.controllers.clock import Reading
from gpufinops.controllers.idle_nodes import PoolShutdown, settings_of
from gpufinops.core.gpus import rules_of
from gpufinops.core.idle.plan import NodeEvent
from gpufinops.handlers.context import OperatorContext, context_of
from gpufinops.handlers.events import post
from gpufinops.handlers.loop import run_loop


@kopf.index("", "v1", "pods")
def pods_by_node(
    body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> dict[str, dict[str, Any]]:
    node = spec.get("nodeName")
    rules = rules_of(context_of(memo).config)
    return {node: pod_record(body, rules)} if node else {}


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
    """Keep every managed GPU node's latest body, and one shutdown loop per pool.

    Plain tasks fed by watch events, not Kopf daemons: daemons put a finalizer
    on their object, and a finalizer on Nodes would block their deletion by
    anyone else whenever the operator is down.
    """
    context = context_of(memo)
    if not context.clusterwide:
        return  # node duties are another instance's (namespaced, or --no-node-duties)
    shared = context.shared
    shared.idle_indexes = {k: indexes[k] for k in ("pods_by_node", "pdbs")}
    found = None if type == "DELETED" else settings_of(labels, context.config)
    if found is None:
        shared.node_bodies.pop(name, None)
        return
    shared.node_bodies[name] = dict(body)
    pool = found[0].name
    tasks = shared.idle_tasks
    if pool not in tasks or tasks[pool].done():
        loop = PoolShutdown(pool, context.config, NodeActions(context.api), post_event, logger)
        tasks[pool] = asyncio.get_running_loop().create_task(_run_pool(loop, context, logger))


@kopf.on.cleanup()
async def stop_idle_tasks(memo: kopf.Memo, **_: Any) -> None:
    tasks = context_of(memo).shared.idle_tasks
    for task in list(tasks.values()):
        task.cancel()
    tasks.clear()


def post_event(body: Mapping[str, Any], event: NodeEvent) -> None:
    post(body, event.type, event.reason, event.message)


async def _run_pool(loop: PoolShutdown, context: OperatorContext, logger: kopf.Logger) -> None:
    """The pool's loop: an interval at a time, while the pool has managed nodes."""
    shared = context.shared

    async def tick(clock: Reading) -> bool:
        bodies = [b for b in list(shared.node_bodies.values()) if loop.owns(b)]
        if not bodies:
            return False
        await loop.tick(bodies, shared.idle_indexes, clock, context.prometheus)
        return True

    what = f"idle shutdown of pool {loop.pool.name}"
    await run_loop(tick, lambda: loop.settings.interval_seconds, what=what, logger=logger)
