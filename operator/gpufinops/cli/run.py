"""Start Kopf with our settings: namespaces, liveness, peering, logging."""

import asyncio
import logging

import kopf

from gpufinops.config.model import OperatorConfig


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: list[str],
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
    logging.getLogger("gpufinops").info("starting with %d node pools", len(config.node_pools))
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=None if liveness == "none" else liveness,
        memo=_memo(config, sync_seconds, clusterwide=not namespaces),
        loop=asyncio.new_event_loop(),
    )
    return 0


def _memo(config: OperatorConfig, sync_seconds: float, *, clusterwide: bool) -> kopf.Memo:
    """What every handler shares: config, API client, one Prometheus client.

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
    from gpufinops.adapters.prometheus.workload import WorkloadSignals
    from gpufinops.api.spec import AIWorkloadSpec

    prometheus = PrometheusClient(config.prometheus.url, timeout=config.prometheus.timeout_seconds)
    per_workload = os.environ.get("GPUFINOPS_PER_WORKLOAD_QUERIES", "") not in ("", "0")
    batcher = (
        None
        if per_workload
        else SignalBatcher(PrometheusVectors(prometheus), ttl=max(sync_seconds / 2, 0.5))
    )

    def signals_for(namespace: str, spec: AIWorkloadSpec, _: OperatorConfig) -> WorkloadSignals:
        return WorkloadSignals(prometheus, namespace, spec, batcher)

    return kopf.Memo(
        config=config,
        api=load_kube_config(),
        signals_for=signals_for,
        prometheus=prometheus,
        sync_seconds=sync_seconds,
        clusterwide=clusterwide,
    )
