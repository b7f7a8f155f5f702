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
    """What every handler shares: config, API client, one Prometheus client."""
    from gpufinops.adapters.kubeclient import load_kube_config
    from gpufinops.adapters.prometheus.client import PrometheusClient
    from gpufinops.adapters.prometheus.workload import WorkloadSignals
    from gpufinops.api.spec import AIWorkloadSpec

    prometheus = PrometheusClient(config.prometheus.url, timeout=config.prometheus.timeout_seconds)

    def signals_for(namespace: str, spec: AIWorkloadSpec, _: OperatorConfig) -> WorkloadSignals:
        return WorkloadSignals(prometheus, namespace, spec)

    return kopf.Memo(
        config=config,
        api=load_kube_config(),
        signals_for=signals_for,
        sync_seconds=sync_seconds,
        clusterwide=clusterwide,
    )
