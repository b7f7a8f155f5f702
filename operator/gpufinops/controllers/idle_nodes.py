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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.nodes import (
    RemovalRefused,
    node_labels,
    node_snapshot,
    pod_record,
    pod_snapshot,
    pool_of,
)
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.utilization import node_peak_gpu_utilization
from gpufinops.config.model import (
    IdleShutdownDefaults,
    NodePool,
    OperatorConfig,
    ShutdownProvider,
)
from gpufinops.controllers.clock import Reading
from gpufinops.core.events import EventReason
from gpufinops.core.gpus import GpuResource, rules_of
from gpufinops.core.idle.plan import (
    DRAIN_STARTED,
    IDLE_SINCE,
    RELEASED,
    REPORTS,
    NodeEvent,
    NodePlan,
    NodeState,
    PoolPolicy,
    advance,
    claim,
    claim_blockers,
    plan_pool,
)
from gpufinops.core.idle.shutdown import PHASE_ANNOTATION, REMOVAL_REQUESTED, Phase, Step
from gpufinops.core.scaling.schedule import window_open

Body = dict[str, Any]


def settings_of(
    labels: Any, config: OperatorConfig
) -> tuple[NodePool, IdleShutdownDefaults] | None:
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
    leaves_it = settings.provider == ShutdownProvider.DRAIN
    return PoolPolicy(
        idle_after_seconds=settings.idle_after_seconds,
        max_nodes_per_interval=settings.max_nodes_per_interval,
        max_percent=settings.max_percent,
        in_window=_in_window(settings, now),
        dry_run=settings.dry_run,
        drain_timeout_seconds=settings.drain_timeout_seconds,
        utilization_percent=settings.gpu_utilization_below_percent,
        deletion_delay_seconds=settings.deletion_delay_after_taint_seconds,
        releases_after_seconds=settings.drain_timeout_seconds if leaves_it else None,
    )


class Actions(Protocol):
    def read_node(self, node: str) -> dict[str, Any] | None: ...
    def pods_on(self, node: str) -> list[dict[str, Any]]: ...
    def annotate(
        self, node: str, annotations: Mapping[str, str | None], uid: str | None = None
    ) -> bool: ...
    def set_taint(self, node: str, present: bool) -> bool: ...
    def evict(self, namespace: str, name: str) -> bool: ...
    def removal_blocker(
        self, node: Mapping[str, Any], settings: IdleShutdownDefaults
    ) -> str | None: ...
    def removal_done(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> bool: ...
    def release(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> None: ...
    def shut_down(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> str | None: ...


MAX_STEPS_PER_TICK = 6
"""Taint, drain, record the shutdown, remove: with a fresh look before each, at most
this many looks per node and interval (a bound, not a target)."""


class PoolShutdown:
    """One pool's idle shutdown: observe, plan (core), carry the plan out."""

    def __init__(
        self,
        pool: str,
        config: OperatorConfig,
        actions: Actions,
        post: Callable[[Mapping[str, Any], NodeEvent], None],
        logger: logging.Logger | logging.LoggerAdapter[Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        found = config.pool(pool)
        assert found is not None
        self.pool, self.settings = found, config.idle_shutdown_for(found)
        self.config, self.actions, self.post, self.logger = config, actions, post, logger
        self.rules: tuple[GpuResource, ...] = rules_of(config)
        self._clock = clock
        self._reported: dict[str, tuple[str, str]] = {}
        """Per node uid, the standing decision last reported (REPORTS Events)."""
        self._refused: dict[str, tuple[str, float]] = {}
        """Per node uid, the provider's refusal and until when (monotonic) it is believed."""
        self._claimed: dict[str, float] = {}
        """Nodes this loop claimed (tainted) lately, until the watch shows their phase."""

    def owns(self, body: Mapping[str, Any]) -> bool:
        found = settings_of(node_labels(body), self.config)
        return found is not None and found[0].name == self.pool.name

    @property
    def _memory_seconds(self) -> float:
        return max(10 * self.settings.interval_seconds, 60.0)

    # ------------------------------------------------------------ observe

    def _state(
        self, body: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
        pdb_list: Sequence[Mapping[str, Any]], low: bool | None,
    ) -> NodeState:  # fmt: skip
        labels = node_labels(body)
        pods = tuple(pod_snapshot(r, pdb_list, self.rules, labels) for r in records)
        refused = self._refused.get(_uid(body))
        refusal = refused[0] if refused is not None and refused[1] > self._clock() else None
        return NodeState(node_snapshot(body, self.pool.name, self.rules), pods, low, refusal)

    def _as_claimed(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The body, with a claim this loop made that the watch does not show yet: the
        budget must count it, whatever the watch's lag."""
        name = str(body["metadata"]["name"])
        at = self._claimed.get(name)
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if at is None or annotations.get(PHASE_ANNOTATION):
            self._claimed.pop(name, None)
            return body
        if self._clock() - at > 2 * self.settings.interval_seconds + 5:
            self._claimed.pop(name, None)
            return body
        meta = {**body["metadata"], "annotations": {**annotations, **claim(0.0)}}
        return {**body, "metadata": meta}

    async def _fresh(
        self, name: str, pdb_list: Sequence[Mapping[str, Any]], low: bool | None
    ) -> tuple[Body, NodeState] | None:
        """The node and its pods as the API server has them now (None: the node is gone).

        GPU utilisation is the interval's reading (one query per node and interval).
        """
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
        bodies = [self._as_claimed(b) for b in bodies]
        live = {_uid(b) for b in bodies}
        for memory in (self._reported, self._refused):
            for uid in [u for u in memory if u not in live]:
                del memory[uid]
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

    async def _annotate(self, body: Mapping[str, Any], record: Mapping[str, str | None]) -> bool:
        """Write on this very node (uid precondition); False when it is gone or replaced."""
        if not record:
            return True
        name = str(body["metadata"]["name"])
        uid = (body.get("metadata") or {}).get("uid")
        return await asyncio.to_thread(self.actions.annotate, name, record, uid)

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
            if not await self._annotate(body, {IDLE_SINCE: since}):
                return
        if state.phase == Phase.NONE and plan.step != Step.ABORT:
            self._report(body, plan.events)
            if plan.step == Step.DONE and not plan.reasons:
                self._reported.pop(_uid(body), None)
        elif (
            plan.step in (Step.DRAIN, Step.WAIT, Step.SHUT_DOWN)
            and plan.record.get(DRAIN_STARTED) is not None
            # the drain start moved with a clock step: recorded before the fresh look
            and not await self._annotate(body, {DRAIN_STARTED: plan.record[DRAIN_STARTED]})
        ):
            return
        if plan.step in (Step.DONE, Step.AWAIT_REMOVAL):
            return
        for _ in range(MAX_STEPS_PER_TICK):
            # Look again, at the API server itself, before every step that changes the node.
            fresh = await self._fresh(name, pdb_list, low)
            if fresh is None:
                return
            body, state = fresh
            if state.phase == Phase.NONE and not state.node.idle_tainted:
                if plan.step != Step.TAINT or not await self._taint(body, state, policy, now):
                    return
                continue
            plan = advance(state, policy, now)
            if plan.step == Step.ABORT:
                await self._abort(body, plan)
                return
            self._report(body, plan.events)
            if plan.step in (Step.DONE, Step.AWAIT_REMOVAL):
                return
            if not await self._annotate(body, plan.record):
                return
            if plan.step in (Step.DRAIN, Step.WAIT):
                await self._evict(name, state, plan)
                if plan.evict or plan.step == Step.WAIT:
                    return  # evicted pods take their grace period; the rest next interval
                continue
            if state.phase != Phase.SHUTTING_DOWN:
                continue  # ShuttingDown recorded: one more fresh look before the provider
            # Shielded: a loop cancelled meanwhile (the operator stopping) still records it.
            await asyncio.shield(self._shut_down(body, plan, now))
            return

    async def _taint(self, body: Body, state: NodeState, policy: PoolPolicy, now: float) -> bool:
        """Claim the node, if the fresh view agrees and the provider may remove it."""
        if claim_blockers(state, policy, now):
            return False
        blocker = await asyncio.to_thread(self.actions.removal_blocker, body, self.settings)
        if blocker:
            self._refused[_uid(body)] = (blocker, self._clock() + self._memory_seconds)
            self._report(body, [NodeEvent("Warning", EventReason.SHUTDOWN_REFUSED, blocker)])
            return False
        if not await self._annotate(body, claim(now)):
            return False
        self._claimed[state.node.name] = self._clock()
        return await asyncio.to_thread(self.actions.set_taint, state.node.name, True)

    async def _evict(self, name: str, state: NodeState, plan: NodePlan) -> None:
        # Killed between recording Tainted and tainting, the node is not tainted yet:
        # taint it before draining, or the evicted pods' replacements may land back on it.
        if not state.node.idle_tainted:
            await asyncio.to_thread(self.actions.set_taint, name, True)
        for pod in plan.evict:
            await asyncio.to_thread(self.actions.evict, pod.namespace, pod.name)

    async def _abort(self, body: Body, plan: NodePlan) -> None:
        """Give the node back, unless the provider already took it (recorded or not)."""
        if plan.phase == Phase.SHUTTING_DOWN and await asyncio.to_thread(
            self.actions.removal_done, body, self.settings
        ):
            # Killed after the provider acted but before it was recorded: record it now.
            await self._annotate(body, {REMOVAL_REQUESTED: f"{time.time():.3f}"})
            return
        name = str(body["metadata"]["name"])
        await asyncio.to_thread(self.actions.release, body, self.settings)
        await asyncio.to_thread(self.actions.set_taint, name, False)
        await self._annotate(body, plan.record)
        self._claimed.pop(name, None)
        self._report(body, plan.events)

    async def _shut_down(self, body: Body, plan: NodePlan, now: float) -> None:
        try:
            done = await asyncio.to_thread(self.actions.shut_down, body, self.settings)
        except RemovalRefused as refused:
            self._refused[_uid(body)] = (str(refused), self._clock() + self._memory_seconds)
            self._report(body, [NodeEvent("Warning", EventReason.SHUTDOWN_REFUSED, str(refused))])
            await self._abort(body, replace(plan, record=RELEASED, phase=Phase.TAINTED, events=()))
            return
        if done is None:
            return  # the node is gone, or another node now has its name: nothing to record
        await self._annotate(body, {REMOVAL_REQUESTED: f"{now:.3f}"})
        metrics.NODES_SHUT_DOWN.labels(self.pool.name).inc()
        message = f"idle GPU node shut down via the {self.settings.provider} provider: {done}"
        self.post(body, NodeEvent("Normal", EventReason.SHUT_DOWN, message))


def _uid(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))
