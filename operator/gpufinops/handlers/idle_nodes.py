"""Idle GPU node shutdown: one loop per pool, carrying out the core's plan.

Each interval the loop observes the pool (nodes from the watch, pods and PDBs
from Kopf indexes, GPU utilisation from Prometheus), asks ``core.idle.plan``
what to do with every node, and does it. Before each step that changes a node
it looks again at the API server itself (the node, and the pods bound to it,
read fresh rather than from the watch), and asks the core again: a pod bound a
moment ago is seen before anything is drained or removed. Progress is recorded
on the node before each step, so a restarted operator resumes (or un-taints a
node that got work meanwhile), and the provider's action, once recorded, is
never repeated.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import kopf

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.nodes import (
    NodeActions,
    RemovalRefused,
    node_labels,
    node_snapshot,
    pod_record,
    pod_snapshot,
    pool_of,
)
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.utilization import node_peak_gpu_utilization
from gpufinops.config.model import IdleShutdownDefaults, NodePool, OperatorConfig
from gpufinops.core.gpus import GpuResource, rules_of
from gpufinops.core.idle.plan import (
    DRAIN_STARTED,
    IDLE_SINCE,
    REPORTS,
    IdleEventReason,
    NodeEvent,
    NodePlan,
    NodeState,
    PoolPolicy,
    advance,
    observe,
    plan_pool,
    unsafe_reasons,
)
from gpufinops.core.idle.shutdown import (
    PHASE_ANNOTATION,
    REMOVAL_REQUESTED,
    Phase,
    Step,
    phase_after,
)
from gpufinops.core.scaling.schedule import window_open
from gpufinops.handlers.clock import ClockSteps, Reading

Body = dict[str, Any]
MAX_STEPS_PER_TICK = 6
"""Taint, drain, shut down, with a fresh look between each: never more per interval."""


@kopf.index("", "v1", "pods")
def pods_by_node(
    body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> dict[str, dict[str, Any]]:
    node = spec.get("nodeName")
    rules = rules_of(getattr(memo, "config", None))
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


@kopf.index("", "v1", "nodes")
def nodes_by_pool(
    name: str, body: kopf.Body, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> dict[str, dict[str, Any]]:
    pool = pool_of(labels, memo.config.node_pools)
    if pool is None:
        return {}
    return {pool.name: {"name": name, "body": dict(body)}}


def _settings(labels: Any, config: OperatorConfig) -> tuple[NodePool, IdleShutdownDefaults] | None:
    pool = pool_of(labels, config.node_pools)
    if pool is None:
        return None
    settings = config.idle_shutdown_for(pool)
    return (pool, settings) if settings.enabled else None


def _in_window(settings: IdleShutdownDefaults, now: float) -> bool:
    if not settings.schedule:
        return True
    return any(window_open(w.cron, w.timezone, w.duration_seconds, now) for w in settings.schedule)


def policy_of(settings: IdleShutdownDefaults, now: float) -> PoolPolicy:
    return PoolPolicy(
        idle_after_seconds=settings.idle_after_seconds,
        max_nodes_per_interval=settings.max_nodes_per_interval,
        max_percent=settings.max_percent,
        in_window=_in_window(settings, now),
        dry_run=settings.dry_run,
        drain_timeout_seconds=settings.drain_timeout_seconds,
        utilization_percent=settings.gpu_utilization_below_percent,
    )


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
    if not getattr(memo, "clusterwide", True):
        return  # node duties are another instance's (namespaced, or --no-node-duties)
    memo.idle_indexes = {k: indexes[k] for k in ("pods_by_node", "pdbs", "nodes_by_pool")}
    found = None if type == "DELETED" else _settings(labels, memo.config)
    if found is None:
        memo.node_bodies.pop(name, None)
        return
    memo.node_bodies[name] = dict(body)
    pool = found[0].name
    tasks: dict[str, asyncio.Task[None]] = memo.idle_tasks
    if pool not in tasks or tasks[pool].done():
        loop = PoolShutdown(pool, memo.config, NodeActions(memo.api), post_event, logger)
        tasks[pool] = asyncio.get_running_loop().create_task(_run_pool(loop, memo, logger))


@kopf.on.cleanup()
async def stop_idle_tasks(memo: kopf.Memo, **_: Any) -> None:
    for task in list(memo.idle_tasks.values()):
        task.cancel()
    memo.idle_tasks.clear()


def post_event(body: Mapping[str, Any], event: NodeEvent) -> None:
    kopf.event(
        cast(kopf.Body, dict(body)), type=event.type, reason=event.reason, message=event.message
    )


async def _run_pool(loop: "PoolShutdown", memo: kopf.Memo, logger: kopf.Logger) -> None:
    """The pool's loop: an interval at a time, while the pool has managed nodes."""
    clock = ClockSteps()
    clock.read()
    while True:
        bodies = [b for b in list(memo.node_bodies.values()) if loop.owns(b)]
        if not bodies:
            return
        try:
            await loop.tick(
                bodies, memo.idle_indexes, clock.read(), getattr(memo, "prometheus", None)
            )
        except Exception as exc:  # one bad interval must not end the pool's loop
            logger.warning(f"idle shutdown of pool {loop.pool.name} failed, retrying: {exc}")
        await asyncio.sleep(loop.settings.interval_seconds)


class Actions(Protocol):
    def read_node(self, node: str) -> dict[str, Any] | None: ...
    def pods_on(self, node: str) -> list[dict[str, Any]]: ...
    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> bool: ...
    def set_taint(self, node: str, present: bool) -> bool: ...
    def evict(self, namespace: str, name: str) -> bool: ...
    def removal_blocker(
        self, node: Mapping[str, Any], settings: IdleShutdownDefaults
    ) -> str | None: ...
    def shut_down(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> str: ...


class PoolShutdown:
    """One pool's idle shutdown: observe, plan (core), carry the plan out."""

    def __init__(
        self,
        pool: str,
        config: OperatorConfig,
        actions: Actions,
        post: Callable[[Mapping[str, Any], NodeEvent], None],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        found = config.pool(pool)
        assert found is not None
        self.pool, self.settings = found, config.idle_shutdown_for(found)
        self.config, self.actions, self.post, self.logger = config, actions, post, logger
        self.rules: tuple[GpuResource, ...] = rules_of(config)
        self._reported: dict[str, tuple[str, str]] = {}
        """Per node uid, the standing decision last reported (REPORTS Events)."""

    def owns(self, body: Mapping[str, Any]) -> bool:
        found = _settings(node_labels(body), self.config)
        return found is not None and found[0].name == self.pool.name

    # ------------------------------------------------------------ observe

    def _state(
        self, body: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
        pdb_list: Sequence[Mapping[str, Any]], low: bool | None,
    ) -> NodeState:  # fmt: skip
        labels = node_labels(body)
        pods = tuple(pod_snapshot(r, pdb_list, self.rules, labels) for r in records)
        return NodeState(node_snapshot(body, self.pool.name, self.rules), pods, low)

    async def _fresh(
        self, name: str, pdb_list: Sequence[Mapping[str, Any]], low: bool | None
    ) -> tuple[Body, NodeState] | None:
        """The node and its pods as the API server has them now (None: the node is gone)."""
        body = await asyncio.to_thread(self.actions.read_node, name)
        if body is None:
            return None
        pods = await asyncio.to_thread(self.actions.pods_on, name)
        records = [pod_record(p, self.rules) for p in pods]
        return body, self._state(body, records, pdb_list, low)

    async def _utilization_low(
        self, name: str, prometheus: PrometheusClient | None, elapsed: float
    ) -> bool | None:
        """Whether every GPU of the node stayed below the threshold since the last look.

        None without a threshold; False when unknown (a failed or empty query):
        missing data never makes a node idle.
        """
        threshold = self.settings.gpu_utilization_below_percent
        if threshold is None:
            return None
        if prometheus is None:
            return False
        window = max(elapsed + self.settings.interval_seconds, 60.0)
        try:
            peak = await asyncio.to_thread(
                node_peak_gpu_utilization, prometheus, self.settings.gpu_utilization_node_label,
                name, window,
            )  # fmt: skip
        except MetricsError:
            return False
        return peak < threshold

    # ------------------------------------------------------------ one interval

    async def tick(
        self,
        bodies: Sequence[Mapping[str, Any]],
        indexes: Mapping[str, Any],
        reading: Reading,
        prometheus: PrometheusClient | None = None,
    ) -> list[NodePlan]:
        now, stepped, elapsed = reading
        pdb_list = [p for values in indexes["pdbs"].values() for p in values]
        states, lows = [], {}
        for body in bodies:
            name = str(body["metadata"]["name"])
            lows[name] = await self._utilization_low(name, prometheus, elapsed)
            records = list(indexes["pods_by_node"].get(name, []))
            states.append(self._state(body, records, pdb_list, lows[name]))
        policy = policy_of(self.settings, now)
        plans = plan_pool(states, policy, now, stepped)
        for body, state, plan in zip(bodies, states, plans, strict=True):
            if plan.idle:
                gpus = state.node.gpus
                metrics.IDLE_GPU_SECONDS.labels(self.pool.name).inc(gpus * elapsed)
                metrics.IDLE_COST.labels(self.pool.name).inc(
                    gpus * elapsed / 3600 * self.pool.gpu_hourly_price_usd
                )
            try:
                await self._carry_out(
                    body, state, plan, policy, now, pdb_list, lows[state.node.name]
                )
            except Exception as exc:  # one node's failure must not stop the others
                self.logger.warning(
                    f"idle shutdown of {state.node.name} failed, retrying next interval: {exc}"
                )
        return plans

    def _report(self, body: Mapping[str, Any], events: Sequence[NodeEvent]) -> None:
        """Post the plan's Events; a standing decision only when it changed."""
        uid = _uid(body)
        for event in events:
            if event.reason in REPORTS:
                key = (str(event.reason), event.message)
                if self._reported.get(uid) == key:
                    continue
                self._reported[uid] = key
            self.post(body, event)

    async def _carry_out(
        self,
        body: Mapping[str, Any],
        state: NodeState,
        plan: NodePlan,
        policy: PoolPolicy,
        now: float,
        pdb_list: Sequence[Mapping[str, Any]],
        low: bool | None,
    ) -> None:
        name = state.node.name
        if plan.timer.since != state.timer.since:
            since = None if plan.timer.since is None else f"{plan.timer.since:.3f}"
            if not await asyncio.to_thread(self.actions.annotate, name, {IDLE_SINCE: since}):
                return
        if plan.drain_started is not None and state.phase == Phase.DRAINING:
            moved = {DRAIN_STARTED: f"{plan.drain_started:.3f}"}  # moved with a clock step
            if not await asyncio.to_thread(self.actions.annotate, name, moved):
                return
        if state.phase == Phase.NONE:
            self._report(body, plan.events)
            if plan.step == Step.DONE and not plan.reasons:
                self._reported.pop(_uid(body), None)
        if plan.step in (Step.DONE, Step.AWAIT_REMOVAL):
            return
        for _ in range(MAX_STEPS_PER_TICK):
            # Look again, at the API server itself, before every step that changes the node.
            fresh = await self._fresh(name, pdb_list, low)
            if fresh is None:
                return
            body, state = fresh
            if state.phase == Phase.NONE:
                if plan.step != Step.TAINT or not await self._taint(body, state, now):
                    return
                plan = NodePlan(name, plan.idle, plan.timer, Step.DRAIN, Phase.TAINTED)
                continue
            plan = advance(state, policy, now)
            self._report(body, plan.events)
            if plan.step == Step.ABORT:
                await self._abort(name)
                return
            if plan.step in (Step.DRAIN, Step.WAIT):
                await self._drain(name, state, plan)
                if plan.evict or plan.step == Step.WAIT:
                    return  # the evicted pods take their grace period; next interval
                continue
            if plan.step != Step.SHUT_DOWN:
                return
            if state.phase != Phase.SHUTTING_DOWN:
                # Recorded first; one more fresh look decides whether the provider acts.
                await asyncio.to_thread(
                    self.actions.annotate, name, {PHASE_ANNOTATION: Phase.SHUTTING_DOWN.value}
                )
                continue
            # Shielded: a loop cancelled meanwhile (the operator stopping) still records it.
            await asyncio.shield(self._shut_down(body, now))
            return

    async def _taint(self, body: Body, state: NodeState, now: float) -> bool:
        """Claim the node, if the fresh view agrees it is idle and unprotected."""
        idle, _ = observe(state, now, 0.0)
        if unsafe_reasons(state, idle, now):
            return False
        blocker = await asyncio.to_thread(self.actions.removal_blocker, body, self.settings)
        if blocker:
            self._report(body, [NodeEvent("Warning", IdleEventReason.REFUSED, blocker)])
            return False
        name = state.node.name
        tainted = phase_after(Step.TAINT, Phase.NONE).value
        await asyncio.to_thread(self.actions.annotate, name, {PHASE_ANNOTATION: tainted})
        return await asyncio.to_thread(self.actions.set_taint, name, True)

    async def _drain(self, name: str, state: NodeState, plan: NodePlan) -> None:
        """Record the drain, keep the node tainted, evict what the plan says."""
        if state.phase != Phase.DRAINING:
            record: dict[str, str | None] = {PHASE_ANNOTATION: Phase.DRAINING.value}
            if plan.drain_started is not None:
                record[DRAIN_STARTED] = f"{plan.drain_started:.3f}"
            await asyncio.to_thread(self.actions.annotate, name, record)
        # Killed between recording Tainted and tainting, the node is not tainted yet:
        # taint it before draining, or the evicted pods' replacements may land back on it.
        if not state.node.idle_tainted:
            await asyncio.to_thread(self.actions.set_taint, name, True)
        for pod in plan.evict:
            await asyncio.to_thread(self.actions.evict, pod.namespace, pod.name)

    async def _abort(self, name: str) -> None:
        await asyncio.to_thread(self.actions.set_taint, name, False)
        cleared: dict[str, str | None] = {
            PHASE_ANNOTATION: None, DRAIN_STARTED: None, IDLE_SINCE: None, REMOVAL_REQUESTED: None,
        }  # fmt: skip
        await asyncio.to_thread(self.actions.annotate, name, cleared)

    async def _shut_down(self, body: Body, now: float) -> None:
        name = str(body["metadata"]["name"])
        try:
            done = await asyncio.to_thread(self.actions.shut_down, body, self.settings)
        except RemovalRefused as refused:
            self._report(body, [NodeEvent("Warning", IdleEventReason.REFUSED, str(refused))])
            await self._abort(name)
            return
        await asyncio.to_thread(self.actions.annotate, name, {REMOVAL_REQUESTED: f"{now:.3f}"})
        metrics.NODES_SHUT_DOWN.labels(self.pool.name).inc()
        message = f"idle GPU node shut down via the {self.settings.provider} provider: {done}"
        self.post(body, NodeEvent("Normal", IdleEventReason.SHUT_DOWN, message))


def _uid(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))
