"""A stand-in for a node autoscaler: adds a fake GPU node when pods wait for one.

The operator shuts idle GPU nodes down; in a real cluster Karpenter or the
cluster autoscaler brings capacity back when demand returns. The local cluster
has neither, so without this the first idle shutdown would cap every later
peak. It watches the demo namespace for pods the scheduler could not place,
and after a boot delay adds one KWOK node to the pool they ask for, up to a
limit. It exists only in the local demo, never against a real cluster.

It also does what consolidation does for a real autoscaler: it asks the
ReplicaSet controller (``pod-deletion-cost``) to remove, on scale-down, the
pods on a pool's highest-numbered nodes first. Left alone, the controller
deletes from the most crowded node and keeps pods spread, so no node would
ever empty and the operator's idle shutdown would have nothing to show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from gpufinops.demo.kube import Obj, get, items
from gpufinops.localcluster.nodes import POOL_LABEL, NodePool, node_manifest

BOOT_SECONDS = 15.0
"""How long a new node takes to appear after pods start waiting (a cloud VM's boot)."""
EXTRA_NODES = 2
"""Nodes a pool may grow by beyond its initial count in ``nodes.yaml``."""
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def unschedulable_pools(pods: list[Obj]) -> dict[str, int]:
    """Pending pods the scheduler refused, counted by the pool their nodeSelector names."""
    waiting: dict[str, int] = {}
    for pod in pods:
        if get(pod, "status", "phase") != "Pending" or get(pod, "spec", "nodeName"):
            continue
        refused = any(
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
            for c in get(pod, "status", "conditions") or []
        )
        pool = (get(pod, "spec", "nodeSelector") or {}).get(POOL_LABEL)
        if refused and pool:
            waiting[pool] = waiting.get(pool, 0) + 1
    return waiting


def deletion_cost(node: str) -> str:
    """Lower on later nodes of a pool (``<pool>-<n>``), so those empty first."""
    suffix = node.rsplit("-", 1)[-1]
    return str(-100 * int(suffix)) if suffix.isdigit() else "0"


def next_node_name(pool: str, existing: set[str]) -> str:
    index = 0
    while f"{pool}-{index}" in existing:
        index += 1
    return f"{pool}-{index}"


class Provisioner:
    """Adds at most one node per pool per ``BOOT_SECONDS`` while its pods wait."""

    def __init__(
        self, api: client.ApiClient, namespace: str, pools: list[NodePool],
        note: Callable[[str], None], created: list[str] | None = None,
    ) -> None:  # fmt: skip
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.pools = {p.name: p for p in pools}
        self.note = note
        self.created = created if created is not None else []
        """Nodes added, for whoever restores the cluster afterwards."""
        self._waiting_since: dict[str, float] = {}

    def tick(self, now: float) -> None:
        self._prefer_emptying_later_nodes()
        self._add_nodes(now)

    def _prefer_emptying_later_nodes(self) -> None:
        pods = items(
            self.core.list_namespaced_pod, self.namespace, field_selector="status.phase=Running"
        )
        for pod in pods:
            node = get(pod, "spec", "nodeName")
            cost = deletion_cost(str(node)) if node else None
            annotations = get(pod, "metadata", "annotations") or {}
            if cost is not None and annotations.get(DELETION_COST) != cost:
                name = str(get(pod, "metadata", "name"))
                patch = {"metadata": {"annotations": {DELETION_COST: cost}}}
                self.core.patch_namespaced_pod(name, self.namespace, patch)

    def _add_nodes(self, now: float) -> None:
        pods = items(
            self.core.list_namespaced_pod, self.namespace, field_selector="status.phase=Pending"
        )
        waiting = unschedulable_pools(pods)
        for pool in list(self._waiting_since):
            if pool not in waiting:
                del self._waiting_since[pool]
        for pool_name, count in waiting.items():
            found = self.pools.get(pool_name)
            if found is None:
                continue
            since = self._waiting_since.setdefault(pool_name, now)
            if now - since < BOOT_SECONDS:
                continue
            nodes = items(self.core.list_node, label_selector=f"{POOL_LABEL}={pool_name}")
            names = {str(get(n, "metadata", "name")) for n in nodes}
            if len(names) >= found.count + EXTRA_NODES:
                continue
            name = next_node_name(pool_name, names)
            manifest: Any = node_manifest(found, name)
            self.core.create_node(manifest)
            self.created.append(name)
            self._waiting_since[pool_name] = now
            self.note(f"node {name} added to {pool_name}: {count} pod(s) waited for a GPU")
