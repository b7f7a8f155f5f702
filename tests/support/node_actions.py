"""An in-memory stand-in for ``adapters.nodes.NodeActions``, for unit tests of the
idle-shutdown loop (the integration tests use the real API server)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from gpufinops.config.model import IdleShutdownDefaults

TAINT = "gpufinops.dev/idle-shutdown"


def node_body(name: str, annotations: dict[str, str] | None = None, taint: bool = False,
              pool: str = "clock-test", gpus: int = 1) -> dict[str, Any]:  # fmt: skip
    taints = [{"key": TAINT, "value": "true", "effect": "NoSchedule"}] if taint else []
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": {"pool": pool},
                     "annotations": dict(annotations or {})},
        "spec": {"taints": taints},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def pod_body(name: str, node: str, gpus: int = 0, owner: str | None = "ReplicaSet",
             **meta: Any) -> dict[str, Any]:  # fmt: skip
    owners = [{"kind": owner, "name": "x", "controller": True}] if owner else []
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "metadata": {"namespace": "ns", "name": name, "ownerReferences": owners, **meta},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": resources}]},
        "status": {"phase": "Running"},
    }


class FakeNodeActions:
    """Nodes and pods in dicts; every call is logged in ``calls``."""

    def __init__(self, *nodes: dict[str, Any]) -> None:
        self.nodes = {n["metadata"]["name"]: n for n in nodes}
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[str] = []
        self.on_taint: Callable[[str], None] | None = None
        self.on_shut_down: Callable[[str], None] | None = None
        self.removes_node = True
        self.refusal: str | None = None
        self.provider_done = False

    def body(self, node: str) -> dict[str, Any]:
        return self.nodes[node]

    def read_node(self, node: str) -> dict[str, Any] | None:
        found = self.nodes.get(node)
        return copy.deepcopy(found) if found is not None else None

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.pods.get(node, []))

    def annotate(
        self, node: str, annotations: Mapping[str, str | None], uid: str | None = None
    ) -> bool:
        self.calls.append(f"annotate {dict(annotations)}")
        if node not in self.nodes or (uid and self.nodes[node]["metadata"]["uid"] != uid):
            return False
        marks = self.nodes[node]["metadata"]["annotations"]
        for key, value in annotations.items():
            if value is None:
                marks.pop(key, None)
            else:
                marks[key] = value
        return True

    def set_taint(self, node: str, present: bool) -> bool:
        self.calls.append(f"taint {present}")
        if node not in self.nodes:
            return False
        taints = [t for t in self.nodes[node]["spec"]["taints"] if t["key"] != TAINT]
        if present:
            taints.append({"key": TAINT, "value": "true", "effect": "NoSchedule"})
        self.nodes[node]["spec"]["taints"] = taints
        if present and self.on_taint is not None:
            self.on_taint(node)
        return True

    def evict(self, namespace: str, name: str) -> bool:
        self.calls.append(f"evict {name}")
        return True

    def removal_blocker(
        self, node: Mapping[str, Any], settings: IdleShutdownDefaults
    ) -> str | None:
        return self.refusal

    def removal_done(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> bool:
        return self.provider_done

    def release(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> None:
        self.calls.append(f"release {node['metadata']['name']}")

    def shut_down(self, node: Mapping[str, Any], settings: IdleShutdownDefaults) -> str | None:
        name = node["metadata"]["name"]
        self.calls.append(f"shut_down {name}")
        if self.on_shut_down is not None:
            self.on_shut_down(name)
        if self.removes_node:
            self.nodes.pop(name, None)
        return "removed"
