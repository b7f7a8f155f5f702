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
                "deletionDelayAfterTaintSeconds": 1,
                "maxNodesPerInterval": 10,
                "dryRun": False,
            },
        },
    ]
}
"""The operator config: the default pools, and ``idle-test`` last."""


def add_node(
    kubectl: KubectlRun, name: str, annotations: dict[str, str | None] | None = None,
    taint: bool = False, wait: bool = True, *,
    labels: dict[str, str | None] | None = None,
    resources: dict[str, str | None] | None = None,
) -> None:  # fmt: skip
    """A node of the pool with ``annotations``, and the idle taint if ``taint``.

    ``wait`` waits until it is Ready: not for a node the operator may delete at
    once (one set up as a killed operator left it mid-shutdown). ``labels`` and
    ``resources`` (capacity and allocatable alike) are set over the pool's: the
    pool label to put the node in another pool, say; None removes one (e.g.
    ``nvidia.com/gpu`` from a node with other accelerators, or the KWOK annotation
    from a node that is then no KWOK node: it never gets Ready).
    """
    manifest = node_manifest(POOL, name)
    _merge(manifest["metadata"]["annotations"], annotations)
    _merge(manifest["metadata"]["labels"], labels)
    for field in ("capacity", "allocatable"):
        _merge(manifest["status"][field], resources)
    if taint:
        manifest["spec"]["taints"].append({"key": TAINT, "value": "true", "effect": "NoSchedule"})
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)))
    if wait:
        ok(kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s"))


def _merge(into: dict[str, str], changes: dict[str, str | None] | None) -> None:
    for key, value in (changes or {}).items():
        if value is None:
            into.pop(key, None)
        else:
            into[key] = value


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
