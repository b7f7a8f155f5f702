"""Fake GPU nodes: the pools of ``nodes.yaml`` rendered as kwok-managed Node objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NODES_FILE = Path(__file__).with_name("nodes.yaml")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_TAINT = {"key": KWOK_ANNOTATION, "value": "fake", "effect": "NoSchedule"}
POOL_LABEL = "gpufinops.dev/pool"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    instance_type: str
    capacity_type: str
    gpu_product: str
    gpus: int
    cpu: str
    memory: str
    pods: int
    zone: str

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]


def load_pools(path: Path = NODES_FILE) -> list[NodePool]:
    data = yaml.safe_load(path.read_text())
    return [
        NodePool(
            name=str(p["name"]),
            count=int(p["count"]),
            instance_type=str(p["instanceType"]),
            capacity_type=str(p["capacityType"]),
            gpu_product=str(p["gpuProduct"]),
            gpus=int(p["gpus"]),
            cpu=str(p["cpu"]),
            memory=str(p["memory"]),
            pods=int(p["pods"]),
            zone=str(p["zone"]),
        )
        for p in data["pools"]
    ]


def node_manifest(pool: NodePool, name: str) -> dict[str, Any]:
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(pool.pods),
        GPU_RESOURCE: str(pool.gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": pool.instance_type,
                "karpenter.sh/capacity-type": pool.capacity_type,
                "nvidia.com/gpu.product": pool.gpu_product,
                "nvidia.com/gpu.count": str(pool.gpus),
                "topology.kubernetes.io/zone": pool.zone,
                POOL_LABEL: pool.name,
            },
        },
        "spec": {"taints": [dict(KWOK_TAINT)]},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def node_manifests(pools: list[NodePool]) -> list[dict[str, Any]]:
    return [node_manifest(pool, name) for pool in pools for name in pool.node_names()]


def render(pools: list[NodePool]) -> str:
    """All nodes as one multi-document YAML stream, for ``kubectl apply -f -``."""
    return yaml.safe_dump_all(node_manifests(pools), sort_keys=False)
