"""The spot replicas of an Inference Deployment: one child Deployment per spot pool.

The scaled Deployment (the target) keeps the on-demand replicas; each spot pool gets
a copy of it, ``<target>-spot-<pool>``, owned by the AIWorkload and pinned to the
pool (its node selector, its tolerations). A ReplicaSet neither places nor removes
pods per pool, so exact per-pool counts need one controller per pool; the Service
in front of the target selects the children's pods too (they keep its labels).

This module reads what the children hold (their pods, and the taints of the nodes
under them) and writes what a ``SpotPlan`` asks: creates, updates, scales and
deletes children, marks pods under an interruption notice so a scale-down removes
them first, and evicts those still there a tick later.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufinops.adapters.deployments import scale_deployment
from gpufinops.adapters.scale_targets import pod_is_ready
from gpufinops.api.resource import GROUP, VERSION
from gpufinops.core.placement.interruptions import INTERRUPTION_TAINTS
from gpufinops.core.scaling.spot import PoolObservation

_Write = TypeVar("_Write", bound=Callable[..., None])

CAPACITY_CLASS_LABEL = "gpufinops.dev/capacity-class"
"""``spot`` on a child Deployment, in its selector and on its pods: the selectors of
the target and of its children differ, so no controller counts another's pods."""
POOL_LABEL = "gpufinops.dev/spot-pool"
OWNER_LABEL = "gpufinops.dev/spot-owner"
"""The AIWorkload's uid: a valid label value whatever the names' lengths, and unique,
so two workloads' children never mix."""
TEMPLATE_HASH_ANNOTATION = "gpufinops.dev/template-hash"
"""Hash of what the child was made from (the target's template and the pool's
placement): a child is rewritten only when it changed."""
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
NOTICED_DELETION_COST = "-2147483647"
"""The lowest cost: a ReplicaSet scaling down removes these pods first."""
SPOT = "spot"


def child_name(target: str, pool: str) -> str:
    return f"{target}-spot-{pool}"


@dataclass(frozen=True)
class PoolPlacement:
    """Where a spot pool's replicas go (from the operator config)."""

    name: str
    selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Owner:
    """The AIWorkload owning the children."""

    name: str
    uid: str


@dataclass
class SpotReading:
    """The target and its spot children as they are now."""

    target: dict[str, Any]
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Child Deployments by pool (pools no longer listed included)."""
    pools: dict[str, PoolObservation] = field(default_factory=dict)
    marked: frozenset[str] = frozenset()
    """Noticed pods already carrying the lowest deletion cost (marked on an earlier tick)."""

    @property
    def target_replicas(self) -> int:
        replicas = (self.target.get("spec") or {}).get("replicas")
        return 1 if replicas is None else int(replicas)

    @property
    def target_ready(self) -> int:
        return int((self.target.get("status") or {}).get("readyReplicas") or 0)

    def child_replicas(self, pool: str) -> int:
        child = self.children.get(pool)
        if child is None:
            return 0
        return int((child.get("spec") or {}).get("replicas") or 0)

    @property
    def spot_ready(self) -> int:
        return sum(p.ready for p in self.pools.values())


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def observe_pods(
    pods: Iterable[Mapping[str, Any]], notices: Mapping[str, str], nodes_seen: Iterable[str]
) -> tuple[dict[str, PoolObservation], frozenset[str]]:
    """Each pool's replicas from its pods: ``notices`` maps a node under an interruption
    notice to the notice's reason; a pod bound to a node not in ``nodes_seen`` lost
    its node (reclaimed before or without a notice) and counts as noticed."""
    known = set(nodes_seen)
    counts: dict[str, dict[str, Any]] = {}
    marked: set[str] = set()
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue  # on its way out: neither serving nor to be removed again
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        pool = (meta.get("labels") or {}).get(POOL_LABEL)
        if not pool:
            continue
        c = counts.setdefault(pool, {"ready": 0, "starting": 0, "pending": 0, "since": None,
                                     "noticed": [], "reason": ""})  # fmt: skip
        node = (pod.get("spec") or {}).get("nodeName")
        name = str(meta.get("name"))
        if node and (node in notices or node not in known):
            c["noticed"].append(name)
            c["reason"] = c["reason"] or notices.get(node, "NodeGone")
            if (meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION) == (
                NOTICED_DELETION_COST
            ):
                marked.add(name)
        elif not node:
            c["pending"] += 1
            created = _epoch(meta.get("creationTimestamp"))
            if created is not None and (c["since"] is None or created < c["since"]):
                c["since"] = created
        elif pod_is_ready(pod):
            c["ready"] += 1
        else:
            c["starting"] += 1
    observed = {
        pool: PoolObservation(
            ready=c["ready"],
            starting=c["starting"],
            pending=c["pending"],
            pending_since=c["since"],
            noticed=tuple(sorted(c["noticed"])),
            notice_reason=c["reason"],
        )
        for pool, c in counts.items()
    }
    return observed, frozenset(marked)


def notice_of(node: Mapping[str, Any]) -> str | None:
    """The reason of the node's interruption notice (one of ``INTERRUPTION_TAINTS``)."""
    for taint in (node.get("spec") or {}).get("taints") or []:
        reason = INTERRUPTION_TAINTS.get(str(taint.get("key")))
        if reason is not None:
            return f"{reason} ({taint.get('key')})"
    return None


def template_hash(template: Mapping[str, Any], placement: PoolPlacement) -> str:
    made_of = {
        "template": template,
        "selector": dict(placement.selector),
        "tolerations": [dict(t) for t in placement.tolerations],
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:20]


def child_manifest(
    target: Mapping[str, Any], placement: PoolPlacement, owner: Owner, replicas: int
) -> dict[str, Any]:
    """The child Deployment of ``placement``'s pool: the target's pod template, pinned to
    the pool. The template's nodeSelector is replaced by the pool's (an on-demand
    selector in it would contradict the pool's); its affinity and tolerations stay,
    with the pool's tolerations added."""
    meta = target.get("metadata") or {}
    spec = target.get("spec") or {}
    namespace = str(meta.get("namespace"))
    source = spec.get("template") or {}
    template = copy.deepcopy(dict(source))
    extra = {CAPACITY_CLASS_LABEL: SPOT, POOL_LABEL: placement.name, OWNER_LABEL: owner.uid}
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), **extra}
    pod = template.setdefault("spec", {})
    pod["nodeSelector"] = dict(placement.selector)
    tolerations = list(pod.get("tolerations") or [])
    for toleration in placement.tolerations:
        if dict(toleration) not in tolerations:
            tolerations.append(dict(toleration))
    if tolerations:
        pod["tolerations"] = tolerations
    selector = copy.deepcopy(dict(spec.get("selector") or {}))
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), **extra}
    child_spec: dict[str, Any] = {"replicas": replicas, "selector": selector, "template": template}
    for key in ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"):
        if key in spec:
            child_spec[key] = copy.deepcopy(spec[key])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": child_name(str(meta.get("name")), placement.name),
            "namespace": namespace,
            "labels": dict(extra),
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(source, placement)},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "AIWorkload",
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": child_spec,
    }


def _json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.data))


class SpotWriteForbidden(Exception):
    """The operator's account may not write what spot replicas need (the chart's
    ``rbac.spotInference`` is off): said on the workload, not only in the log."""


def _forbidden_says(what: str) -> Callable[[_Write], _Write]:
    def wrap(write: _Write) -> _Write:
        @functools.wraps(write)
        def run(self: SpotChildren, *args: Any, **kwargs: Any) -> None:
            try:
                write(self, *args, **kwargs)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                raise SpotWriteForbidden(
                    f"the operator may not {what} in namespace {self.namespace}: spot "
                    "replicas need the chart's rbac.spotInference=true"
                ) from None

        return cast(_Write, run)

    return wrap


class SpotChildren:
    """Reads and writes one workload's spot children (blocking: run in a thread)."""

    def __init__(self, api: client.ApiClient, namespace: str, target: str, owner: Owner) -> None:
        self.api, self.namespace, self.target, self.owner = api, namespace, target, owner
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def read(self) -> SpotReading | None:
        """The target and its children now; None when the target is gone. An API
        failure raises: nothing is decided from a partial view."""
        try:
            target = _json(self.apps.read_namespaced_deployment(
                self.target, self.namespace, _preload_content=False))  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        owned = f"{OWNER_LABEL}={self.owner.uid}"
        listed = _json(self.apps.list_namespaced_deployment(
            self.namespace, label_selector=owned, _preload_content=False))  # fmt: skip
        children: dict[str, dict[str, Any]] = {}
        for item in listed.get("items") or []:
            pool = ((item.get("metadata") or {}).get("labels") or {}).get(POOL_LABEL)
            if pool:
                children[str(pool)] = item
        pods: list[dict[str, Any]] = []
        if children:
            found = _json(self.core.list_namespaced_pod(
                self.namespace, label_selector=owned, _preload_content=False))  # fmt: skip
            pods = list(found.get("items") or [])
        notices: dict[str, str] = {}
        seen: set[str] = set()
        for node_name in sorted({str(p["spec"]["nodeName"]) for p in pods
                                 if (p.get("spec") or {}).get("nodeName")}):  # fmt: skip
            nodes = _json(self.core.list_node(
                field_selector=f"metadata.name={node_name}", _preload_content=False))  # fmt: skip
            for node in nodes.get("items") or []:
                seen.add(node_name)
                reason = notice_of(node)
                if reason is not None:
                    notices[node_name] = reason
        pools, marked = observe_pods(pods, notices, seen)
        return SpotReading(target=target, children=children, pools=pools, marked=marked)

    # ----------------------------------------------------------------- writes

    @_forbidden_says("scale Deployments")
    def scale_target(self, reading: SpotReading, replicas: int) -> None:
        if replicas != reading.target_replicas:
            scale_deployment(self.api, self.namespace, self.target, replicas,
                             reading.target_replicas)  # fmt: skip

    @_forbidden_says("create or update Deployments")
    def put_child(self, reading: SpotReading, placement: PoolPlacement, replicas: int) -> None:
        """Create the pool's child, or bring it to ``replicas`` and the target's template."""
        wanted = child_manifest(reading.target, placement, self.owner, replicas)
        body: Any = wanted  # the client sends a dict as it is
        child = reading.children.get(placement.name)
        if child is None:
            if replicas > 0:
                self.apps.create_namespaced_deployment(self.namespace, body)
            return
        meta = child.get("metadata") or {}
        same = (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) == (
            wanted["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
        )
        if same:
            current = reading.child_replicas(placement.name)
            if current != replicas:
                scale_deployment(self.api, self.namespace, str(meta.get("name")), replicas,
                                 current)  # fmt: skip
            return
        # The target's template changed: the child follows it (a rollout of its own);
        # the selector is immutable and stays as it was made.
        wanted["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        wanted["spec"]["selector"] = (child.get("spec") or {}).get("selector")
        self.apps.replace_namespaced_deployment(str(meta.get("name")), self.namespace, body)

    @_forbidden_says("patch pods")
    def mark_noticed(self, pods: Iterable[str]) -> None:
        """The lowest deletion cost on pods under a notice: the scale-down that follows
        removes them, not a healthy replica."""
        body = {"metadata": {"annotations": {DELETION_COST_ANNOTATION: NOTICED_DELETION_COST}}}
        for pod in pods:
            try:
                self.core.patch_namespaced_pod(pod, self.namespace, body)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    @_forbidden_says("evict pods")
    def evict(self, pods: Iterable[str]) -> None:
        """Evict pods still under a notice a tick after they were marked (the Eviction
        API honours PodDisruptionBudgets; a refusal is retried next tick)."""
        for pod in pods:
            eviction = client.V1Eviction(
                metadata=client.V1ObjectMeta(name=pod, namespace=self.namespace)
            )
            try:
                self.core.create_namespaced_pod_eviction(pod, self.namespace, eviction)
            except ApiException as exc:
                if exc.status not in (404, 429):
                    raise

    @_forbidden_says("delete Deployments")
    def delete_child(self, reading: SpotReading, pool: str) -> None:
        child = reading.children.get(pool)
        if child is None:
            return
        try:
            self.apps.delete_namespaced_deployment(
                str((child.get("metadata") or {}).get("name")), self.namespace,
                propagation_policy="Background",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise
