"""Reading the screen's :class:`Snapshot` from the cluster, Prometheus and the generator.

Every read is best effort: an API or Prometheus error becomes a line under
the screen and an empty column, because the view must keep refreshing while
the operator, the cluster or Prometheus restarts under it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.presets import queries_for
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.demo.kube import Obj, condition_true, get, items
from gpufinops.demo.loadgen import LoadReport
from gpufinops.demo.snapshot import EventRow, PoolRow, WorkloadRow
from gpufinops.localcluster.nodes import GPU_RESOURCE, POOL_LABEL

EVENT_LINES = 8
NODE_REASONS = {"IdleDetected", "IdleShutdownDryRun", "Draining", "ShutDown", "ShutdownAborted"}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None


def placement_text(placement: Mapping[str, Any] | None) -> str | None:
    """``pool (capacity) phase`` from status.placement, None when nothing is placed."""
    if not placement or not placement.get("pool"):
        phase = (placement or {}).get("phase")
        return str(phase) if phase else None
    text = str(placement["pool"])
    if placement.get("capacityType"):
        text += f" ({placement['capacityType']})"
    if placement.get("phase"):
        text += f" {placement['phase']}"
    return text


def workload_row(
    item: Mapping[str, Any], load: LoadReport | None, demand: float | None, queue: float | None
) -> WorkloadRow:
    """One AIWorkload's line from its object (and what Prometheus and the generator say)."""
    meta, spec = item.get("metadata") or {}, item.get("spec") or {}
    status = item.get("status") or {}
    replicas = status.get("replicas") or {}
    cost = status.get("cost") or {}
    forecast = status.get("forecast") or {}
    decision = status.get("lastDecision") or {}
    return WorkloadRow(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        type=str(spec.get("type", "?")),
        team=str((spec.get("costAllocation") or {}).get("team", "?")),
        current=_int(replicas.get("current")),
        desired=_int(replicas.get("desired")),
        ready=_int(replicas.get("ready")),
        load=load.offered_rps if load else None,
        demand=demand,
        queue=queue,
        forecast=_float(forecast.get("predictedPeak")),
        placement=placement_text(status.get("placement")),
        hourly_usd=_float(cost.get("hourlyUSD")),
        today_usd=_float(cost.get("todayUSD")),
        month_usd=_float(cost.get("monthToDateUSD")),
        decision=f"{decision.get('action')}: {decision.get('reason')}" if decision else None,
    )


def _signals(
    prometheus: PrometheusClient | None, item: Mapping[str, Any]
) -> tuple[float | None, float | None]:
    """Demand and queue as the operator's own queries read them."""
    if prometheus is None:
        return None, None
    try:
        spec = AIWorkloadSpec.model_validate(item.get("spec") or {})
    except ValidationError:
        return None, None
    if spec.inference is None:
        return None, None
    namespace = str((item.get("metadata") or {}).get("namespace", ""))
    ref = spec.inference.target_ref
    queries = queries_for(spec.inference.metrics, namespace, ref.name, kind=ref.kind)
    try:
        demand = prometheus.instant(queries.arrival_rate) if queries.arrival_rate else None
        return demand, prometheus.instant(queries.queue)
    except MetricsError:
        return None, None


def read_workloads(
    api: client.ApiClient,
    namespace: str,
    prometheus: PrometheusClient | None,
    loads: Mapping[str, LoadReport],
) -> list[WorkloadRow]:
    custom = client.CustomObjectsApi(api)
    found = items(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
    rows = []
    for item in sorted(found, key=lambda i: str(get(i, "metadata", "name"))):
        target = ((item.get("spec") or {}).get("inference") or {}).get("targetRef") or {}
        demand, queue = _signals(prometheus, item)
        rows.append(workload_row(item, loads.get(str(target.get("name"))), demand, queue))
    return rows


def gpus_of(pod: Obj) -> int:
    total = 0
    for container in get(pod, "spec", "containers") or []:
        limits = get(container, "resources", "limits") or {}
        total += int(limits.get(GPU_RESOURCE, 0))
    return total


def read_pools(api: client.ApiClient, pools: Mapping[str, str]) -> list[PoolRow]:
    """GPU nodes per pool (``pools``: name to capacity type, shown even when empty)."""
    core = client.CoreV1Api(api)
    nodes = items(core.list_node, label_selector=POOL_LABEL)
    pods = items(core.list_pod_for_all_namespaces, field_selector="status.phase=Running")
    used: dict[str, int] = {}
    for pod in pods:
        node_name = get(pod, "spec", "nodeName")
        if node_name:
            used[node_name] = used.get(node_name, 0) + gpus_of(pod)
    rows: dict[str, list[Any]] = {name: [kind, 0, 0, 0, 0] for name, kind in pools.items()}
    for node in nodes:
        labels = get(node, "metadata", "labels") or {}
        kind = labels.get("karpenter.sh/capacity-type", "?")
        row = rows.setdefault(labels[POOL_LABEL], [kind, 0, 0, 0, 0])
        row[1] += 1
        row[2] += int(condition_true(node, "Ready"))
        row[3] += used.get(str(get(node, "metadata", "name")), 0)
        row[4] += int((get(node, "status", "allocatable") or {}).get(GPU_RESOURCE, 0))
    return [PoolRow(name, *values) for name, values in sorted(rows.items())]


def _event_time(event: Obj) -> datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        raw = event.get(key)
        if raw:
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return None


def event_row(event: Obj, namespace: str) -> EventRow | None:
    """An operator decision in the demo's namespace, or a node shutdown step; else None."""
    obj = event.get("involvedObject") or {}
    kind, reason = obj.get("kind"), str(event.get("reason", ""))
    in_demo = kind == "AIWorkload" and get(event, "metadata", "namespace") == namespace
    if not in_demo and not (kind == "Node" and reason in NODE_REASONS):
        return None
    return EventRow(
        _event_time(event),
        reason,
        f"{kind}/{obj.get('name')}",
        str(event.get("message") or ""),
        event.get("type") == "Warning",
    )


def read_events(api: client.ApiClient, namespace: str, notes: list[EventRow]) -> list[EventRow]:
    """The latest operator decisions (AIWorkload Events), node shutdowns and demo notes."""
    core = client.CoreV1Api(api)
    epoch = datetime.min.replace(tzinfo=UTC)
    # Event times have whole seconds; the resourceVersion orders those of one second.
    keyed = [(r.time or epoch, 0, r) for r in notes]
    for event in items(core.list_event_for_all_namespaces):
        row = event_row(event, namespace)
        if row is not None:
            version = str(get(event, "metadata", "resourceVersion") or "0")
            keyed.append((row.time or epoch, int(version) if version.isdigit() else 0, row))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [row for _, _, row in keyed[-EVENT_LINES:]]
