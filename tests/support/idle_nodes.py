"""Idle GPU node shutdown on the tests' own KWOK pool: what the idle node tests share.

The pool ``idle-test`` is added to the operator's default pools, with idle
shutdown enabled on a short timer (``IDLE_AFTER`` seconds, checked every second),
so that the shared pools stay intact. Nodes are added one by one as each test
needs them; the tests delete them afterwards (other tests count each pool's nodes).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.support.kube import KubectlRun, ok

from gpufinops.localcluster.nodes import NodePool, node_manifest

POOL = NodePool("idle-test", 0, "g6.12xlarge", "on-demand", "NVIDIA-L4", 4, "48", "192Gi", 110,
                "us-east-1a")  # fmt: skip
IDLE_AFTER = 3
TAINT = "gpufinops.dev/idle-shutdown"
DEFAULT_POOLS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "operator/gpufinops/config/default.yaml").read_text()
)["nodePools"]
CONFIG = {
    "nodePools": [
        *DEFAULT_POOLS,
        {
            "name": "idle-test",
            "selector": {"gpufinops.dev/pool": "idle-test"},
            "instanceType": "g6.12xlarge",
            "capacityType": "on-demand",
            "idleShutdown": {
                "enabled": True,
                "idleAfterSeconds": IDLE_AFTER,
                "intervalSeconds": 1,
                "maxNodesPerInterval": 10,
                "dryRun": False,
            },
        },
    ]
}
"""The operator config: the default pools, and ``idle-test`` last."""


def add_node(
    kubectl: KubectlRun, name: str, annotations: dict[str, str] | None = None,
    taint: bool = False, wait: bool = True,
) -> None:  # fmt: skip
    """A node of the pool with ``annotations``, and the idle taint if ``taint``.

    ``wait`` waits until it is Ready: not for a node the operator may delete at
    once (one set up as a killed operator left it mid-shutdown).
    """
    manifest = node_manifest(POOL, name)
    manifest["metadata"]["annotations"].update(annotations or {})
    if taint:
        manifest["spec"]["taints"].append({"key": TAINT, "value": "true", "effect": "NoSchedule"})
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)))
    if wait:
        ok(kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s"))


def node_exists(kubectl: KubectlRun, node: str) -> bool:
    """Whether the node is still there: shutting an idle node down deletes it."""
    return kubectl("get", "node", node).returncode == 0


def node_annotation(kubectl: KubectlRun, node: str, key: str) -> str:
    """The node's annotation ``key``; empty when it is not set or the node is gone."""
    escaped = key.replace(".", "\\.").replace("/", "\\/")
    out = kubectl("get", "node", node, "-o", f"jsonpath={{.metadata.annotations.{escaped}}}")
    return str(out.stdout) if out.returncode == 0 else ""


def node_taints(kubectl: KubectlRun, node: str) -> list[str]:
    """The keys of the node's taints."""
    return ok(kubectl("get", "node", node, "-o", "jsonpath={.spec.taints[*].key}")).split()
