"""What every handler shares, typed: built once at start-up and never replaced.

Kopf hands each handler a memo, an untyped bag copied per object. The operator puts
one ``OperatorContext`` in it and every handler reads that through ``context_of``,
so a missing piece fails loudly at the first handler instead of being papered over
by a ``getattr`` default. What handlers must mutate together (the idle loops per
pool, the cost loop, node bodies) sits in ``Shared``, one instance for the whole
operator: a memo copy would otherwise hold a copy of the holder.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from gpufinops.adapters.prometheus.client import PrometheusClient
from gpufinops.adapters.prometheus.pool import QueryPool
from gpufinops.adapters.scale_targets import ScalableKinds
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import OperatorConfig

DEFAULT_SYNC_SECONDS = 15.0
"""The period of every per-workload loop (``--sync-seconds``), as the HPA's sync period."""


@dataclass
class Shared:
    """The mutable state handlers share across objects."""

    idle_tasks: dict[str, "asyncio.Task[None]"] = field(default_factory=dict)
    """One idle-shutdown loop per pool (its nodes are planned together, within budget)."""
    node_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every managed GPU node's latest body, from the watch."""
    idle_indexes: dict[str, Any] = field(default_factory=dict)
    """The pod and PDB indexes the idle loops read (only resource handlers receive them)."""
    namespace_labels_seen: dict[str, dict[str, str]] = field(default_factory=dict)
    """Namespace labels as last seen, so a relabelling is told from a re-listed watch."""
    cost_task: "asyncio.Task[None] | None" = None
    cost_indexes: dict[str, Any] = field(default_factory=dict)
    """The indexes the cost loop reads, refreshed by the handlers that start it."""


@dataclass(frozen=True)
class OperatorContext:
    config: OperatorConfig
    api: client.ApiClient
    signals_for: Callable[[str, AIWorkloadSpec, OperatorConfig], Any] | None = None
    """Builds a workload's signal source (batched Prometheus reads in production)."""
    prometheus: PrometheusClient | None = None
    query_pool: QueryPool | None = None
    """Where tenants' custom queries run, within each namespace's share."""
    scalable_kinds: ScalableKinds | None = None
    sync_seconds: float = DEFAULT_SYNC_SECONDS
    clusterwide: bool = True
    """Whether this instance has the node duties (sees every pod, acts on nodes)."""
    shared: Shared = field(default_factory=Shared)


def context_of(memo: Any) -> OperatorContext:
    """The operator's context from a Kopf memo (``gpufinops run`` puts it there)."""
    context = getattr(memo, "context", None)
    if not isinstance(context, OperatorContext):
        raise RuntimeError(
            "no OperatorContext in the Kopf memo: start the operator with `gpufinops run`, "
            "or pass memo=kopf.Memo(context=OperatorContext(...)) to kopf.run"
        )
    return context
