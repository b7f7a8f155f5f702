"""Kopf wiring of Inference autoscaling: indexes of what exists, one daemon per workload.

Indexes keep Deployments and other autoscalers in memory from watches, so a
tick on a Deployment costs no request; any other kind with a scale subresource
is read each tick (its scale, and its pods through the scale's selector). Each
Inference AIWorkload gets its own daemon (an asyncio task), so a slow workload
never delays another; blocking I/O runs in threads.
"""

import asyncio
import copy
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import kopf

from gpufinops.adapters.deployments import scale_deployment, view_of
from gpufinops.adapters.operator_metrics import forget
from gpufinops.adapters.prometheus.pool import QueryPool
from gpufinops.adapters.scale_targets import (
    ScalableKinds,
    ScaleConflict,
    TargetUnavailable,
    TargetView,
    patch_scale,
    read_target,
)
from gpufinops.adapters.spot_children import Owner, PoolPlacement, SpotChildren
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import OperatorConfig
from gpufinops.controllers.clock import Reading
from gpufinops.controllers.inference import (
    Effects,
    InferenceController,
    Reads,
    SpotWiring,
    is_paused,
)
from gpufinops.handlers.aiworkload import rival_claims
from gpufinops.handlers.context import context_of
from gpufinops.handlers.events import poster
from gpufinops.handlers.indexes import first, namespace_view
from gpufinops.handlers.loop import SpecChecks, run_loop
from gpufinops.handlers.status_writes import ConditionalStatus

API_WRITERS = 4
"""Threads writing status and scales for every workload: at most this many API calls at once,
apart from the threads reading signals (asyncio's default executor)."""
_WRITES = ThreadPoolExecutor(max_workers=API_WRITERS, thread_name_prefix="gpufinops-writes")


# Indexes are async: each is a few dict lookups, run for every watch event; as plain
# functions Kopf would send every one of them through a worker thread.
@kopf.index("apps", "v1", "deployments")
async def deployments(
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[tuple[str | None, str], TargetView]:
    return {(namespace, name): view_of(dict(spec), dict(status), dict(meta))}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
async def hpa_targets(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, str]:
    """What each HPA scales, by (namespace, kind, name)."""
    ref = spec.get("scaleTargetRef") or {}
    return {(namespace, ref.get("kind"), ref.get("name")): f"HorizontalPodAutoscaler/{name}"}


@kopf.index("keda.sh", "v1alpha1", "scaledobjects")
async def keda_targets(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Any, str]:
    """What each ScaledObject scales (KEDA's kind defaults to Deployment)."""
    ref = spec.get("scaleTargetRef") or {}
    kind = ref.get("kind") or "Deployment"
    return {(namespace, kind, ref.get("name")): f"ScaledObject/{name}"}


_READ_STATUS = ("conditions", "budget")
"""The status fields a tick reads: other handlers' conditions, the cost loop's budget."""


def signal_inputs(spec: AIWorkloadSpec) -> tuple[Any, ...]:
    """What a workload's signals are built from: when it changes, they are rebuilt.

    The queries are those the spec check returns (a tenant's confined to its
    namespace), so a namespace becoming trusted or not rebuilds them too.
    """
    assert spec.inference is not None
    inference = spec.inference
    pools = tuple(inference.spot.pools) if inference.spot is not None else ()
    return (inference.metrics, inference.forecast.history_days, inference.target_ref.kind, pools)


def placements_in(config: OperatorConfig) -> Any:
    """The placement of named spot pools, as the operator config defines them (the spec
    check refused any pool missing there, on-demand, or closed to the namespace)."""

    def placements(pools: Sequence[str]) -> dict[str, PoolPlacement]:
        out: dict[str, PoolPlacement] = {}
        for name in pools:
            pool = config.pool(name)
            if pool is not None:
                out[name] = PoolPlacement(name, dict(pool.selector), tuple(pool.tolerations))
        return out

    return placements


def _is_inference(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("type") == "Inference"


@kopf.daemon(GROUP, VERSION, PLURAL, when=_is_inference, cancellation_timeout=10.0)
async def autoscale(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    status: kopf.Status,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **indexes: Any,
) -> None:
    """Run ticks until the workload is deleted or stops being an Inference workload."""
    assert namespace is not None  # AIWorkloads are namespaced
    deployments: kopf.Index[tuple[str, str], TargetView] = indexes["deployments"]
    hpa_targets: kopf.Index[Any, str] = indexes["hpa_targets"]
    keda_targets: kopf.Index[Any, str] = indexes["keda_targets"]
    context = context_of(memo)
    config, api = context.config, context.api
    assert context.signals_for is not None, "the operator context builds signal sources"
    signals_for = context.signals_for
    # The body is a live view: the conditions (and version) a write is conditional on
    # must be those the tick started from, captured together with what it reads.
    write_status = ConditionalStatus(api, namespace, name, whole_fields=True)
    seen: dict[str, Any] = {}
    checks = SpecChecks(config)

    post_event = poster(body)

    controller: InferenceController | None = None
    target: tuple[str, str, str] | None = None  # (apiVersion, kind, name)
    reading: tuple[Any, ...] | None = None  # what the signals were built from
    pool: QueryPool | None = context.query_pool
    kinds: ScalableKinds = context.scalable_kinds or ScalableKinds(api)

    def reads_for(signals: Any) -> Reads | None:
        """Custom queries run in the tenants' pool, within the namespace's share."""
        if pool is None or not getattr(signals, "custom", False):
            return None
        return partial(pool.run, namespace)

    async def look(key: tuple[str, str, str]) -> TargetView | TargetUnavailable | None:
        """The target now: a Deployment from the index, any other kind from its scale."""
        if key[:2] == ("apps/v1", "Deployment"):
            found: TargetView | None = first(deployments, (namespace, key[2]))
            return found
        return await asyncio.to_thread(read_target, api, kinds, namespace, *key)

    def scaler(key: tuple[str, str, str]) -> Any:
        api_version, kind, target_name = key

        def scale(replicas: int) -> None:
            # Never over a newer change: the replicas this tick decided from.
            if (api_version, kind) == ("apps/v1", "Deployment"):
                scale_deployment(api, namespace, target_name, replicas, seen["replicas"])
                return
            resource = kinds.resolve(api_version, kind)
            patch_scale(api, resource, namespace, target_name, replicas, seen["replicas"])

        return scale

    def spot_wiring(target_name: str) -> SpotWiring:
        """The spot children of a Deployment target (owned by this workload's uid)."""
        uid = str(body.get("metadata", {}).get("uid"))
        port = SpotChildren(api, namespace, target_name, Owner(name, uid))
        return SpotWiring(port=port, placements=placements_in(config))

    spot_for: tuple[Any, Any] | None = None

    async def tick(_: Reading) -> None:
        nonlocal controller, target, reading, spot_for
        spec = checks.of(body, namespace_view(indexes, namespace)).spec
        if spec is None or spec.inference is None:
            return
        ref = spec.inference.target_ref
        key = (ref.resolved_api_version, ref.kind, ref.name)
        wanted = signal_inputs(spec)
        if controller is not None and target == key and wanted != reading:
            # Edited queries (or history window) are read from this tick on.
            signals = signals_for(namespace, spec, config)
            controller.use_signals(signals, reads_for(signals))
            reading = wanted
        try:
            current = await look(key)
        except Exception as exc:  # API server away: decide nothing from a guess
            logger.warning(f"reading {ref.kind}/{ref.name} failed, retrying: {exc}")
            return
        if controller is None or target != key:
            target = key
            signals = signals_for(namespace, spec, config)
            reading = wanted
            controller = InferenceController(
                namespace, name, signals,
                Effects(scale=scaler(key), write_status=write_status, post_event=post_event),
                status=dict(status), now=time.time(),
                current_replicas=current.replicas if isinstance(current, TargetView) else None,
                writes=_WRITES, reads=reads_for(signals),
            )  # fmt: skip
        if spot_for != (key, body.get("metadata", {}).get("uid")):
            spot_for = (key, body.get("metadata", {}).get("uid"))
            controller.use_spot(spot_wiring(ref.name) if ref.is_deployment else None)
        conflicts = sorted(
            {*hpa_targets.get((namespace, ref.kind, ref.name), []),
             *keda_targets.get((namespace, ref.kind, ref.name), []),
             *rival_claims(indexes, namespace, ref.kind, ref.name, name)}
        )  # fmt: skip
        write_status.seen(body)
        seen["replicas"] = current.replicas if isinstance(current, TargetView) else None
        # A snapshot of what the tick reads of status (not the autoscaler memory,
        # the largest part, which the controller keeps itself).
        now_status = body.get("status")
        latest = (
            None
            if now_status is None
            else {k: copy.deepcopy(now_status[k]) for k in _READ_STATUS if k in now_status}
        )
        try:
            await controller.tick(
                spec,
                body.get("metadata", {}).get("generation"),
                current,
                conflicts,
                time.time(),
                latest_status=latest,
                paused=is_paused(body.get("metadata", {}).get("annotations")),
            )
        except ScaleConflict as exc:
            logger.info(f"{exc}: changed meanwhile by another client; deciding again")

    try:
        await run_loop(
            tick, lambda: context.sync_seconds, what="autoscaling tick", logger=logger,
            stopped=stopped,
        )  # fmt: skip
    finally:
        forget(namespace, name)
