"""Nodes and pods as the idle rules see them, and the actions that shut a node down.

Every write here is guarded against racing writers: taints are replaced under a
resourceVersion test (another controller's taint added meanwhile is kept, with
its ``timeAdded``), a Node is deleted only if it is still the one observed
(uid precondition), and a MachineDeployment is lowered at most once per node,
recorded in the same atomic patch that lowers it.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufinops.adapters.gpu_resources import claim_count, gpu_requests, node_gpu_count
from gpufinops.config.model import IdleShutdownDefaults, NodePool, ShutdownProvider
from gpufinops.core.gpus import DEFAULT_GPU_RESOURCES, GpuResource, gpu_use
from gpufinops.core.idle.model import IDLE_TAINT, NodeSnapshot, PodSnapshot

MIRROR = "kubernetes.io/config.mirror"
KWOK_NODE = "kwok.x-k8s.io/node"
KARPENTER_TERMINATION = "karpenter.sh/termination"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
CONFLICT_RETRIES = 5

CAPI_GROUP, CAPI_VERSION = "cluster.x-k8s.io", "v1beta1"
CAPI_MACHINE = "cluster.x-k8s.io/machine"
CAPI_NAMESPACE = "cluster.x-k8s.io/cluster-namespace"
CAPI_DEPLOYMENT = "cluster.x-k8s.io/deployment-name"
CAPI_DELETE_MACHINE = "cluster.x-k8s.io/delete-machine"
CAPI_MIN_SIZE = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
MARKED_BY_US = "gpufinops.dev/delete-machine"
"""On a Machine: this operator set ``delete-machine`` (so it is the one to lower the count)."""
LOWERED_FOR = "gpufinops.dev/scaled-down-for"
"""On a MachineDeployment: JSON list of the Machines its replicas were lowered for."""


class RemovalRefused(Exception):
    """The provider must not remove this node (yet); the message says why, for an Event."""


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


def _epoch(raw: Any) -> float | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_record(body: Mapping[str, Any], rules: Sequence[GpuResource]) -> dict[str, Any]:
    """What the pods-by-node index keeps of a pod (small, so the index stays cheap)."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    owners = meta.get("ownerReferences") or []
    controller = next((o.get("kind") for o in owners if o.get("controller")), None)
    local = any(
        "hostPath" in v or ("emptyDir" in v and (v["emptyDir"] or {}).get("medium") != "Memory")
        for v in spec.get("volumes") or []
    )
    annotations = dict(meta.get("annotations") or {})
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "node": spec.get("nodeName", ""),
        "labels": dict(meta.get("labels") or {}),
        "annotations": annotations,
        "phase": status.get("phase", "Pending"),
        "gpu_requests": gpu_requests(spec, rules),
        "claims": claim_count(spec),
        "controller": controller,
        "local_storage": local,
        "terminating": meta.get("deletionTimestamp") is not None,
        "mirror": MIRROR in annotations,
        "started": _epoch(status.get("startTime")) or _epoch(meta.get("creationTimestamp")),
    }


def pod_snapshot(
    record: Mapping[str, Any],
    pdbs: Iterable[Mapping[str, Any]],
    rules: Sequence[GpuResource],
    node_labels: Mapping[str, str] | None = None,
) -> PodSnapshot:
    """A pod with its GPU use on its node and its PodDisruptionBudget situation resolved."""
    matching = [
        p for p in pdbs
        if p.get("namespace") == record["namespace"]
        and selector_matches(p.get("selector"), record["labels"])
    ]  # fmt: skip
    use = gpu_use(record["gpu_requests"], record["claims"], rules, node_labels)
    return PodSnapshot(
        namespace=record["namespace"],
        name=record["name"],
        node=record["node"],
        phase=record["phase"],
        gpus=use.gpus,
        gpu_work=use.work,
        controller_kind=record["controller"],
        annotations=record["annotations"],
        local_storage=record["local_storage"],
        pdb_blocks=any(int(p.get("disruptions_allowed") or 0) <= 0 for p in matching),
        has_pdb=bool(matching),
        terminating=record["terminating"],
        mirror=record["mirror"],
        started=record["started"],
    )


def pool_of(labels: Mapping[str, str], pools: Iterable[NodePool]) -> NodePool | None:
    return next((p for p in pools if all(labels.get(k) == v for k, v in p.selector.items())), None)


def node_labels(body: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((body.get("metadata") or {}).get("labels") or {}).items()}


def node_snapshot(
    body: Mapping[str, Any], pool: str, rules: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES
) -> NodeSnapshot:
    meta, status = body.get("metadata", {}), body.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    taints = (body.get("spec") or {}).get("taints") or []
    gpus = node_gpu_count(body, rules)
    return NodeSnapshot(
        name=meta.get("name", ""),
        pool=pool,
        gpus=gpus,
        ready=ready,
        annotations=dict(meta.get("annotations") or {}),
        being_deleted=meta.get("deletionTimestamp") is not None,
        idle_tainted=any(isinstance(t, Mapping) and t.get("key") == IDLE_TAINT for t in taints),
    )


def _gone(exc: ApiException) -> bool:
    return bool(exc.status == 404)


def _conflict(exc: ApiException) -> bool:
    """A precondition failed: a resourceVersion (409) or a JSON-patch test (422)."""
    return bool(exc.status in (409, 422))


class NodeActions:
    """Read fresh, taint, annotate, evict and remove, through the Kubernetes API."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # ---------------------------------------------------------------- reads

    def read_node(self, node: str) -> dict[str, Any] | None:
        """The node as the API server has it now (None when it is gone)."""
        try:
            response: Any = self.core.read_node(node, _preload_content=False)
        except ApiException as exc:
            if _gone(exc):
                return None
            raise
        found: dict[str, Any] = json.loads(response.data)
        return found

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        """Every pod bound to ``node``, read from the API server (a quorum read, not a
        cache): the view a step is taken on must include pods bound a moment ago."""
        response: Any = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}", _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    # ---------------------------------------------------------------- writes

    def annotate(
        self, node: str, annotations: Mapping[str, str | None], uid: str | None = None
    ) -> bool:
        """Set (None: remove) annotations; False when the node is gone, or (``uid``
        given) when another node has taken its name."""
        meta: dict[str, Any] = {"annotations": dict(annotations)}
        if uid:
            meta["uid"] = uid  # a precondition: the API server refuses another object
        try:
            self.core.patch_node(node, {"metadata": meta})
        except ApiException as exc:
            if _gone(exc) or (uid and exc.status in (409, 422)):
                return False
            raise
        return True

    def set_taint(self, node: str, present: bool) -> bool:
        """Add or remove our taint, keeping every other taint exactly as it is.

        The list is replaced under a test of the resourceVersion it was read at,
        so a taint another controller adds meanwhile (unreachable, a spot
        interruption, ``karpenter.sh/disrupted``) is never lost; on a conflict
        the node is read again. False when the node is gone.
        """
        for _ in range(CONFLICT_RETRIES):
            body = self.read_node(node)
            if body is None:
                return False
            current = [
                t for t in (body.get("spec") or {}).get("taints") or [] if isinstance(t, dict)
            ]
            kept = [t for t in current if t.get("key") != IDLE_TAINT]
            if present:
                kept.append({"key": IDLE_TAINT, "value": "true", "effect": "NoSchedule"})
            if kept == current:
                return True
            version = (body.get("metadata") or {}).get("resourceVersion")
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "add", "path": "/spec/taints", "value": kept},
            ]
            try:
                self.core.patch_node(node, patch, _content_type=JSON_PATCH)
            except ApiException as exc:
                if _gone(exc):
                    return False
                if _conflict(exc):
                    continue
                raise
            return True
        raise RuntimeError(f"node {node}: its taints kept changing; retrying next interval")

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

    # ---------------------------------------------------------------- removal

    def removal_blocker(
        self, node: Mapping[str, Any], settings: IdleShutdownDefaults
    ) -> str | None:
        """Why the provider must not remove this node, checked before it is even tainted."""
        provider = settings.provider
        if provider == ShutdownProvider.KUBERNETES:
            return _kubernetes_blocker(node, settings)
        try:
            if provider == ShutdownProvider.CLUSTER_API:
                self._cluster_api(node, dry_run=True)
            elif provider == ShutdownProvider.KARPENTER:
                self._node_claim(_name(node))
        except RemovalRefused as refused:
            return str(refused)
        return None

    def removal_done(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> bool:
        """Whether the provider already took the node (asked before, result never recorded)."""
        if (node.get("metadata") or {}).get("deletionTimestamp"):
            return True
        provider = settings.provider
        if provider == ShutdownProvider.CLUSTER_API:
            found = self._machine_of(node)
            if found is None:
                return False
            namespace, machine, body = found
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                return True
            deployment = ((body.get("metadata") or {}).get("labels") or {}).get(CAPI_DEPLOYMENT)
            if not deployment:
                return False
            md = self._capi_get(namespace, "machinedeployments", deployment)
            return machine in _lowered_for(md.get("metadata") or {})
        if provider == ShutdownProvider.KARPENTER:
            try:
                claim = self._node_claim(_name(node))
            except RemovalRefused:
                return False
            return bool((claim.get("metadata") or {}).get("deletionTimestamp"))
        return False

    def release(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> None:
        """Undo what a shutdown that is given back left outside the node: a Machine this
        operator marked for deletion but whose MachineDeployment it never lowered (else
        Cluster API's next scale-down would take that Machine, busy again, first)."""
        if settings.provider != ShutdownProvider.CLUSTER_API:
            return
        found = self._machine_of(node)
        if found is not None and found[2] is not None:
            self._unmark_unless_lowered(found[0], found[1])

    def shut_down(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> str | None:
        """Remove the node's capacity through the configured provider; say what was done.

        Safe to call again for the same node (after a crash before its result was
        recorded): no provider takes away more than this one node. None: the node
        is gone, or another node now has its name (nothing was done).
        """
        provider = settings.provider
        name = _name(node)
        if provider == ShutdownProvider.KUBERNETES:
            blocker = _kubernetes_blocker(node, settings)
            if blocker:
                raise RemovalRefused(blocker)
            uid = (node.get("metadata") or {}).get("uid")
            options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
            try:
                self.core.delete_node(name, body=options)
            except ApiException as exc:
                if _gone(exc) or exc.status == 409:  # 409: another node of that name
                    return None
                raise
            return "Node object deleted"
        if provider == ShutdownProvider.KARPENTER:
            return self._karpenter(name)
        if provider == ShutdownProvider.DRAIN:
            return "drained and cordoned; the cluster's node autoscaler removes it"
        return self._cluster_api(node)

    def _node_claim(self, node: str) -> dict[str, Any]:
        """The Karpenter NodeClaim whose ``status.nodeName`` is the node."""
        claims: dict[str, Any] = self.custom.list_cluster_custom_object(  # type: ignore[assignment]
            "karpenter.sh", "v1", "nodeclaims"
        )
        for claim in claims.get("items", []):
            if (claim.get("status") or {}).get("nodeName") == node:
                found: dict[str, Any] = claim
                return found
        raise RemovalRefused(f"no Karpenter NodeClaim has status.nodeName {node}")

    def _karpenter(self, node: str) -> str:
        claim = self._node_claim(node)
        meta = claim.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return f"NodeClaim {meta.get('name')} already being deleted"
        try:
            self.custom.delete_cluster_custom_object(
                "karpenter.sh", "v1", "nodeclaims", meta["name"]
            )
        except ApiException as exc:
            if not _gone(exc):
                raise
        return f"NodeClaim {meta['name']} deleted"

    def _machine_of(self, node: Mapping[str, Any]) -> tuple[str, str, dict[str, Any] | None] | None:
        """(namespace, Machine name, Machine or None when gone) of a Cluster API node."""
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        machine = annotations.get(CAPI_MACHINE)
        if not machine:
            return None
        namespace = annotations.get(CAPI_NAMESPACE, "default")
        try:
            return namespace, machine, self._capi_get(namespace, "machines", machine)
        except ApiException as exc:
            if _gone(exc):
                return namespace, machine, None
            raise

    def _unmark(self, namespace: str, machine: str, body: Mapping[str, Any]) -> None:
        marks = (body.get("metadata") or {}).get("annotations") or {}
        if MARKED_BY_US not in marks:
            return
        patch = {"metadata": {"annotations": {CAPI_DELETE_MACHINE: None, MARKED_BY_US: None}}}
        try:
            self.custom.patch_namespaced_custom_object(
                CAPI_GROUP, CAPI_VERSION, namespace, "machines", machine, patch,
                _content_type=MERGE_PATCH,
            )  # fmt: skip
        except ApiException as exc:
            if not _gone(exc):
                raise

    def _cluster_api(self, node: Mapping[str, Any], dry_run: bool = False) -> str:
        """Mark the node's Machine for deletion and lower its MachineDeployment by one, once.

        As Cluster Autoscaler's clusterapi provider does: ``delete-machine`` tells
        Cluster API which Machine to remove when the count drops; the count is
        lowered only under a resourceVersion test, never below the group's
        minimum nor while it rolls out, and the Machine it was lowered for is
        recorded on the MachineDeployment in that same patch. A second call for
        the same node (a later interval, a restarted operator) finds the record
        and lowers nothing. A Machine someone else marked is refused; a mark of
        ours that could not be followed by the lowering is taken off again, so
        no busy Machine stays first in line for Cluster API's next scale-down.
        """
        found = self._machine_of(node)
        if found is None:
            raise RemovalRefused(f"the node has no {CAPI_MACHINE} annotation")
        namespace, machine, _ = found
        try:
            for _ in range(CONFLICT_RETRIES):
                done = self._cluster_api_once(namespace, machine, dry_run)
                if done is not None:
                    return done
        except Exception:
            if not dry_run:
                self._unmark_unless_lowered(namespace, machine)
            raise
        if not dry_run:
            self._unmark_unless_lowered(namespace, machine)
        raise RuntimeError(
            f"Machine {namespace}/{machine}: kept conflicting; retrying next interval"
        )

    def _cluster_api_once(self, namespace: str, machine: str, dry_run: bool) -> str | None:
        """One attempt; None after a conflict (read again and retry)."""
        try:
            found = self._capi_get(namespace, "machines", machine)
        except ApiException as exc:
            if _gone(exc):
                return f"Machine {namespace}/{machine} is already gone"
            raise
        meta = found.get("metadata") or {}
        marks = meta.get("annotations") or {}
        if meta.get("deletionTimestamp"):
            return f"Machine {namespace}/{machine} is already being deleted"
        deployment = (meta.get("labels") or {}).get(CAPI_DEPLOYMENT)
        if not deployment:
            raise RemovalRefused(
                f"Machine {namespace}/{machine} has no {CAPI_DEPLOYMENT} label "
                "(only MachineDeployments are scaled down)"
            )
        md = self._capi_get(namespace, "machinedeployments", deployment)
        md_meta = md.get("metadata") or {}
        lowered = _lowered_for(md_meta)
        if machine in lowered:
            return f"MachineDeployment {namespace}/{deployment} already lowered for it"
        if CAPI_DELETE_MACHINE in marks and MARKED_BY_US not in marks:
            raise RemovalRefused(
                f"Machine {namespace}/{machine} was marked for deletion by someone else"
            )
        replicas, minimum = _replicas_and_minimum(namespace, deployment, md)
        if replicas - 1 < minimum:
            raise RemovalRefused(
                f"MachineDeployment {namespace}/{deployment} is at its minimum size "
                f"({replicas}, minimum {minimum})"
            )
        if dry_run:
            return ""
        try:
            if MARKED_BY_US not in marks:
                mark = {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                                     "annotations": {CAPI_DELETE_MACHINE: "yes",
                                                     MARKED_BY_US: "true"}}}  # fmt: skip
                self.custom.patch_namespaced_custom_object(
                    CAPI_GROUP, CAPI_VERSION, namespace, "machines", machine, mark,
                    _content_type=MERGE_PATCH,
                )  # fmt: skip
            record = json.dumps(sorted({*self._existing(namespace, lowered), machine}))
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": md_meta.get("resourceVersion")},
                {"op": "test", "path": "/spec/replicas", "value": replicas},
                {"op": "replace", "path": "/spec/replicas", "value": replicas - 1},
                *([] if md_meta.get("annotations") else
                  [{"op": "add", "path": "/metadata/annotations", "value": {}}]),
                {"op": "add", "path": "/metadata/annotations/" + _pointer(LOWERED_FOR),
                 "value": record},
            ]  # fmt: skip
            self.custom.patch_namespaced_custom_object(
                CAPI_GROUP, CAPI_VERSION, namespace, "machinedeployments", deployment,
                patch, _content_type=JSON_PATCH,
            )  # fmt: skip
        except ApiException as exc:
            if _conflict(exc):
                return None
            raise
        return (
            f"Machine {namespace}/{machine} marked for deletion, MachineDeployment "
            f"{deployment} {replicas} → {replicas - 1}"
        )

    def _unmark_unless_lowered(self, namespace: str, machine: str) -> None:
        try:
            body = self._capi_get(namespace, "machines", machine)
            deployment = ((body.get("metadata") or {}).get("labels") or {}).get(CAPI_DEPLOYMENT)
            if deployment:
                md = self._capi_get(namespace, "machinedeployments", deployment)
                if machine in _lowered_for(md.get("metadata") or {}):
                    return
            self._unmark(namespace, machine, body)
        except ApiException as exc:
            if not _gone(exc):
                raise

    def _capi_get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            CAPI_GROUP, CAPI_VERSION, namespace, plural, name
        )
        return found

    def _existing(self, namespace: str, machines: Iterable[str]) -> list[str]:
        """The recorded Machines still there (the record would otherwise only grow)."""
        out = []
        for name in machines:
            try:
                self._capi_get(namespace, "machines", name)
            except ApiException as exc:
                if _gone(exc):
                    continue
                raise
            out.append(name)
        return out


def _replicas_and_minimum(
    namespace: str, deployment: str, md: Mapping[str, Any]
) -> tuple[int, int]:
    """The MachineDeployment's replicas and its node group's minimum; refused when either
    cannot be read, or while it rolls out (the count would be taken from another set)."""
    spec, status = md.get("spec") or {}, md.get("status") or {}
    raw_min = ((md.get("metadata") or {}).get("annotations") or {}).get(CAPI_MIN_SIZE)
    try:
        replicas = int(spec.get("replicas", 1))
        minimum = int(raw_min) if raw_min is not None else 0
    except (TypeError, ValueError):
        raise RemovalRefused(
            f"MachineDeployment {namespace}/{deployment}: replicas {spec.get('replicas')!r} or "
            f"{CAPI_MIN_SIZE} {raw_min!r} is not a number"
        ) from None
    for key in ("replicas", "updatedReplicas"):
        if key in status and status[key] != replicas:
            raise RemovalRefused(
                f"MachineDeployment {namespace}/{deployment} is rolling out or scaling "
                f"(status.{key} {status[key]}, spec.replicas {replicas})"
            )
    return replicas, minimum


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name"))


def _lowered_for(meta: Mapping[str, Any]) -> list[str]:
    raw = (meta.get("annotations") or {}).get(LOWERED_FOR)
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _pointer(key: str) -> str:
    """A JSON pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _kubernetes_blocker(node: Mapping[str, Any], settings: IdleShutdownDefaults) -> str | None:
    """Deleting a Node object ends its billing only where something removes the machine."""
    meta = node.get("metadata") or {}
    if settings.node_deletion_ends_billing:
        return None
    if (meta.get("annotations") or {}).get(KWOK_NODE):
        return None  # a KWOK node is nothing but its object
    if KARPENTER_TERMINATION in (meta.get("finalizers") or []):
        return None  # Karpenter terminates the instance of a deleted Node
    return (
        "deleting this Node would leave its machine running and billing (no known controller "
        "removes it): use the karpenter, cluster-api or drain provider, or set "
        "nodeDeletionEndsBilling: true if your cloud removes the machines of deleted Nodes"
    )
