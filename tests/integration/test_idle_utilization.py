"""Idle by GPU utilisation: with `gpuUtilizationBelowPercent`, a node whose GPU pod
kept its GPUs below the threshold for the whole timer is drained and shut down; a busy
node and a node whose utilisation is unknown (no DCGM series) are kept.

A real Prometheus scrapes a test exporter publishing `DCGM_FI_DEV_GPU_UTIL` with the
`Hostname` label, as dcgm-exporter does; the nodes are the test's own KWOK pool."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.exporter import Exporter
from tests.support.idle_nodes import node_exists
from tests.support.kube import deployment_manifest, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll
from tests.support.promserver import PrometheusServer

from gpufinops.localcluster.binaries import find_prometheus
from gpufinops.localcluster.nodes import NodePool, node_manifest

POOL = NodePool("util-test", 0, "g6.12xlarge", "on-demand", "NVIDIA-L4", 4, "48", "192Gi", 110,
                "us-east-1a")  # fmt: skip
NS = "util-test"
NODES = {"util-low": 2.0, "util-busy": 60.0, "util-unknown": None}
IDLE_AFTER = 3
CONFIG = {
    "nodePools": [
        {
            "name": POOL.name,
            "selector": {"gpufinops.dev/pool": POOL.name},
            "instanceType": POOL.instance_type,
            "capacityType": "on-demand",
            "idleShutdown": {
                "enabled": True,
                "idleAfterSeconds": IDLE_AFTER,
                "intervalSeconds": 1,
                "gpuUtilizationBelowPercent": 10,
                "maxNodesPerInterval": 10,
                "dryRun": False,
            },
        }
    ]
}


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter() as running:
        for node, util in NODES.items():
            if util is not None:
                running.set("DCGM_FI_DEV_GPU_UTIL", {"Hostname": node, "gpu": "0"}, util)
        yield running


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter, tmp_path_factory) -> Iterator[PrometheusServer]:
    with PrometheusServer(
        find_prometheus(install=True), tmp_path_factory.mktemp("util-prom"), [exporter.target]
    ) as server:
        yield server


@pytest.fixture(scope="module")
def nodes(kubectl) -> Iterator[None]:
    ok(kubectl("create", "namespace", NS))
    for node in NODES:
        ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(node_manifest(POOL, node))))
        ok(kubectl("wait", "--for=condition=Ready", f"node/{node}", "--timeout=60s"))
        pod_spec = {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
            "containers": [{"name": "main", "image": "registry.invalid/app:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        }  # fmt: skip
        deployment = deployment_manifest(node, NS, pod_spec)
        ok(kubectl("apply", "-f", "-", input=json.dumps(deployment)))
        ok(kubectl("wait", "-n", NS, f"deployment/{node}",
                   "--for=jsonpath={.status.readyReplicas}=1", "--timeout=60s"))  # fmt: skip
    try:
        yield
    finally:
        kubectl("delete", "deployments", "--all", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "nodes", "-l", f"gpufinops.dev/pool={POOL.name}", "--wait=true",
                "--timeout=60s")  # fmt: skip
        kubectl("delete", "namespace", NS, "--wait=false")


@pytest.fixture(scope="module")
def operator(
    nodes: None, prometheus: PrometheusServer, kubeconfig: Path, tmp_path_factory
) -> Iterator[RunningOperator]:
    root = tmp_path_factory.mktemp("util-operator")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with running_operator(
        kubeconfig, root, "--config", str(config), "--prometheus-url", prometheus.url
    ) as op:
        yield op


def _node(kubectl, node: str) -> dict[str, Any]:
    return dict(json.loads(ok(kubectl("get", "node", node, "-o", "json"))))


def test_a_node_with_idle_gpus_is_shut_down_busy_and_unknown_ones_are_kept(
    operator: RunningOperator, kubectl
) -> None:
    poll(
        lambda: not node_exists(kubectl, "util-low"),
        "the low-utilisation node to be deleted",
        deadline=90,
    )
    deleted = time.time()
    # Several intervals after that, the others were looked at many times.
    poll(lambda: time.time() > deleted + IDLE_AFTER + 2, "more intervals to pass", deadline=30)
    for node in ("util-busy", "util-unknown"):
        assert node_exists(kubectl, node), f"{node} must be kept"
        meta = _node(kubectl, node)
        assert "gpufinops.dev/idle-since" not in (meta["metadata"].get("annotations") or {})
        taints = [t["key"] for t in meta["spec"].get("taints") or []]
        assert "gpufinops.dev/idle-shutdown" not in taints
    shut = operator.metric("gpufinops_nodes_shut_down_total", pool=POOL.name)
    assert shut == 1, f"metric {shut}; operator log tail:\n{operator.log.read_text()[-4000:]}"
