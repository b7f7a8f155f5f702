"""Start Kopf with our settings: the shard, liveness, peering, logging.

A shard is what one operator instance (with its HA replicas) acts on: the
AIWorkloads of its ``--namespace`` patterns (all namespaces by default) that
match its ``--selector``. Node duties (idle GPU node shutdown, the cost of
unallocated GPUs) are cluster-wide and belong to exactly one instance.
"""

import argparse
import asyncio
import logging
import re
from dataclasses import dataclass

import kopf

from gpufinops.api.resource import GROUP, PLURAL
from gpufinops.config.model import OperatorConfig

# One requirement of a label selector: key, !key, key=v, key==v, key!=v, key in (..), key notin (..)
_KEY = r"(?:[a-z0-9A-Z.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(
    rf"\s*(?:!\s*{_KEY}|{_KEY}\s*(?:(?:==|!=|=)\s*{_VALUE}"
    rf"|\s(?:in|notin)\s*\(\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*\))?)\s*"
)


@dataclass(frozen=True)
class Shard:
    """Which AIWorkloads this instance acts on, and whether it has the node duties."""

    namespaces: tuple[str, ...] = ()
    selector: str = ""
    node_duties: bool = True

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def describe(self) -> str:
        where = ", ".join(self.namespaces) if self.namespaces else "all namespaces"
        which = f" matching {self.selector!r}" if self.selector else ""
        duties = "with" if self.node_duties else "without"
        return f"AIWorkloads in {where}{which}, {duties} node duties"


class ShardError(ValueError):
    """An impossible shard: the message says which flag to change."""


def split_selector(selector: str) -> list[str]:
    """The requirements of a label selector (commas inside ``in (...)`` do not split)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def make_shard(namespaces: list[str], selector: str | None, node_duties: bool | None) -> Shard:
    """Check the shard flags together; node duties default to on when cluster-wide."""
    selector = (selector or "").strip()
    if selector and not all(_REQUIREMENT.fullmatch(r) for r in split_selector(selector)):
        raise ShardError(f"--selector {selector!r} is not a Kubernetes label selector")
    if node_duties and namespaces:
        raise ShardError(
            "--node-duties needs a cluster-wide instance (no --namespace): "
            "idle node shutdown must see every pod of a node"
        )
    duties = not namespaces if node_duties is None else node_duties
    return Shard(tuple(namespaces), selector, duties)


def add_shard_arguments(run: argparse.ArgumentParser) -> None:
    """``--selector`` and ``--node-duties`` (``--namespace`` is the run command's own)."""
    run.add_argument(
        "--selector",
        default=None,
        help="act only on AIWorkloads whose labels match this label selector "
        "(e.g. 'gpufinops.dev/shard=a'; filtered by the API server); default: all",
    )
    run.add_argument(
        "--node-duties",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="idle GPU node shutdown and the cost of unallocated GPUs; give them to exactly "
        "one instance when sharding (default: on when cluster-wide, off with --namespace)",
    )


def shard_from_args(args: argparse.Namespace) -> Shard:
    return make_shard(list(args.namespace), args.selector, args.node_duties)


def run_operator(
    config: OperatorConfig,
    *,
    shard: Shard,
    liveness: str,
    peering: str | None,
    priority: int,
    log_format: str,
    verbose: bool,
    metrics_address: str | None = None,
    sync_seconds: float = 15.0,
) -> int:
    """Run until interrupted; the handlers are registered by importing them."""
    import gpufinops.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        verbose=verbose,
        log_format={
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
            "json": kopf.LogFormat.JSON,
        }[log_format],
    )
    if metrics_address:
        from gpufinops.adapters.operator_metrics import serve

        serve(metrics_address)
    log = logging.getLogger("gpufinops")
    log.info("starting with %d node pools", len(config.node_pools))
    log.info("shard: %s; peering: %s", shard.describe(), peering or "standalone")
    settings = kopf.OperatorSettings()
    if shard.selector:
        # Server-side: the other shards' AIWorkloads never reach this instance.
        settings.watching.label_selectors[GROUP, PLURAL] = shard.selector
    kopf.run(
        clusterwide=shard.clusterwide,
        namespaces=list(shard.namespaces),
        settings=settings,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=None if liveness == "none" else liveness,
        memo=_memo(config, sync_seconds, clusterwide=shard.node_duties),
        loop=asyncio.new_event_loop(),
    )
    return 0


def _memo(config: OperatorConfig, sync_seconds: float, *, clusterwide: bool) -> kopf.Memo:
    """What every handler shares: config, API client, one Prometheus client.

    ``clusterwide`` tells the handlers whether this instance has the node duties
    (it sees every pod and is the only one to act on nodes).

    Autoscaling signals are read in batches (one query per preset metric for all
    workloads, cached for half a sync period, so every tick of a period shares
    at most two refreshes). ``GPUFINOPS_PER_WORKLOAD_QUERIES=1`` sends each
    workload's queries on their own instead: the scale benchmark's baseline, and
    a way to rule batching out when chasing a metrics problem.
    """
    import os

    from gpufinops.adapters.kubeclient import load_kube_config
    from gpufinops.adapters.prometheus.batch import PrometheusVectors, SignalBatcher
    from gpufinops.adapters.prometheus.client import PrometheusClient
    from gpufinops.adapters.prometheus.pool import QueryPool
    from gpufinops.adapters.prometheus.workload import WorkloadSignals
    from gpufinops.adapters.scale_targets import ScalableKinds
    from gpufinops.api.spec import AIWorkloadSpec
    from gpufinops.handlers.context import OperatorContext

    prometheus = PrometheusClient.from_config(config.prometheus)
    custom = config.prometheus.custom_queries
    per_workload = os.environ.get("GPUFINOPS_PER_WORKLOAD_QUERIES", "") not in ("", "0")
    batcher = (
        None
        if per_workload
        else SignalBatcher(PrometheusVectors(prometheus), ttl=max(sync_seconds / 2, 0.5))
    )

    def signals_for(namespace: str, spec: AIWorkloadSpec, _: OperatorConfig) -> WorkloadSignals:
        return WorkloadSignals(prometheus, namespace, spec, batcher)

    api = load_kube_config()
    context = OperatorContext(
        config=config,
        api=api,
        scalable_kinds=ScalableKinds(api),
        signals_for=signals_for,
        prometheus=prometheus,
        query_pool=QueryPool(custom.workers, custom.per_namespace),
        sync_seconds=sync_seconds,
        clusterwide=clusterwide,
    )
    return kopf.Memo(context=context)
