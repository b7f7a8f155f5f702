"""Nodes and pods as the idle rules see them, and the actions that shut a node down."""

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufinops.adapters.jobs import parse_quantity
from gpufinops.config.model import NodePool, ShutdownProvider
from gpufinops.core.idle.model import IDLE_TAINT, NodeSnapshot, PodSnapshot

GPU = "nvidia.com/gpu"
IDLE_SINCE = "gpufinops.dev/idle-since"


def _quantity(value: Any) -> float:
    """A GPU quantity (``1``, ``500m``, ``1k``); one the API server would never store is 0."""
    return parse_quantity(value or 0) or 0.0


def pod_gpus(spec: Mapping[str, Any]) -> float:
    """GPUs a pod requests: the sum over containers (limits stand in for requests)."""
    total = 0.0
    for c in spec.get("containers") or []:
        resources = c.get("resources") or {}
        value = (resources.get("requests") or {}).get(GPU) or (resources.get("limits") or {}).get(
            GPU
        )
        total += _quantity(value)
    return total


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_record(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the pods-by-node index keeps of a pod (small, so the index stays cheap)."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    owners = meta.get("ownerReferences") or []
    controller = next((o.get("kind") for o in owners if o.get("controller")), None)
    local = any(
        "hostPath" in v or ("emptyDir" in v and (v["emptyDir"] or {}).get("medium") != "Memory")
        for v in spec.get("volumes") or []
    )
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "node": spec.get("nodeName", ""),
        "labels": dict(meta.get("labels") or {}),
        "annotations": dict(meta.get("annotations") or {}),
        "phase": status.get("phase", "Pending"),
        "gpus": pod_gpus(spec),
        "controller": controller,
        "local_storage": local,
        "terminating": meta.get("deletionTimestamp") is not None,
    }


def pod_snapshot(record: Mapping[str, Any], pdbs: Iterable[Mapping[str, Any]]) -> PodSnapshot:
    """A pod with its PodDisruptionBudget situation resolved."""
    matching = [
        p for p in pdbs
        if p.get("namespace") == record["namespace"]
        and selector_matches(p.get("selector"), record["labels"])
    ]  # fmt: skip
    return PodSnapshot(
        namespace=record["namespace"],
        name=record["name"],
        node=record["node"],
        phase=record["phase"],
        gpus=record["gpus"],
        controller_kind=record["controller"],
        annotations=record["annotations"],
        local_storage=record["local_storage"],
        pdb_blocks=any(int(p.get("disruptions_allowed") or 0) <= 0 for p in matching),
        has_pdb=bool(matching),
        terminating=record["terminating"],
    )


def pool_of(labels: Mapping[str, str], pools: Iterable[NodePool]) -> NodePool | None:
    return next((p for p in pools if all(labels.get(k) == v for k, v in p.selector.items())), None)


def node_snapshot(body: Mapping[str, Any], pool: str) -> NodeSnapshot:
    meta, status = body.get("metadata", {}), body.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return NodeSnapshot(
        name=meta.get("name", ""),
        pool=pool,
        gpus=_quantity((status.get("allocatable") or {}).get(GPU)),
        ready=ready,
        annotations=dict(meta.get("annotations") or {}),
        being_deleted=meta.get("deletionTimestamp") is not None,
    )


class NodeActions:
    """Taint, annotate, evict and shut down, through the Kubernetes API."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None:
        self.core.patch_node(node, {"metadata": {"annotations": dict(annotations)}})

    def set_taint(self, node: str, present: bool) -> None:
        spec = self.core.read_node(node).spec
        current = (spec.taints if spec is not None else None) or []
        kept = [
            {"key": t.key, "value": t.value, "effect": t.effect}
            for t in current
            if t.key != IDLE_TAINT
        ]
        if present:
            kept.append({"key": IDLE_TAINT, "value": "true", "effect": "NoSchedule"})
        self.core.patch_node(node, {"spec": {"taints": kept}})

    def evict(self, namespace: str, name: str) -> bool:
        """Ask to evict a pod; False when a PodDisruptionBudget refuses it now (429)."""
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            self.core.create_namespaced_pod_eviction(name, namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                return True
            if exc.status == 429:
                return False
            raise
        return True

    def shut_down(self, node: str, provider: ShutdownProvider) -> None:
        """Remove the node's capacity through the configured provider."""
        if provider == ShutdownProvider.KUBERNETES:
            try:
                self.core.delete_node(node)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        elif provider == ShutdownProvider.KARPENTER:
            claims: dict[str, Any] = self.custom.list_cluster_custom_object(  # type: ignore[assignment]
                "karpenter.sh", "v1", "nodeclaims"
            )
            for claim in claims.get("items", []):
                if (claim.get("status") or {}).get("nodeName") == node:
                    name = claim["metadata"]["name"]
                    self.custom.delete_cluster_custom_object(
                        "karpenter.sh", "v1", "nodeclaims", name
                    )
        else:
            self._cluster_api(node)

    def _cluster_api(self, node: str) -> None:
        """Mark the Machine for deletion and lower its MachineDeployment by one."""
        meta = self.core.read_node(node).metadata
        annotations = (meta.annotations if meta is not None else None) or {}
        machine = annotations.get("cluster.x-k8s.io/machine")
        namespace = annotations.get("cluster.x-k8s.io/cluster-namespace", "default")
        if not machine:
            raise RuntimeError(f"node {node} has no cluster.x-k8s.io/machine annotation")
        group, version = "cluster.x-k8s.io", "v1beta1"
        self.custom.patch_namespaced_custom_object(
            group, version, namespace, "machines", machine,
            {"metadata": {"annotations": {"cluster.x-k8s.io/delete-machine": "yes"}}},
        )  # fmt: skip
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            group, version, namespace, "machines", machine
        )
        deployment = (body.get("metadata", {}).get("labels") or {}).get(
            "cluster.x-k8s.io/deployment-name"
        )
        if deployment:
            md: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
                group, version, namespace, "machinedeployments", deployment
            )
            replicas = max(0, int(md.get("spec", {}).get("replicas", 1)) - 1)
            self.custom.patch_namespaced_custom_object(
                group, version, namespace, "machinedeployments", deployment,
                {"spec": {"replicas": replicas}},
            )  # fmt: skip
