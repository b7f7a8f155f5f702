"""The embedded local cluster: a real apiserver, fake GPU nodes that run pods, Prometheus."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.kube import KubectlRun, deployment_manifest, ok
from tests.support.polling import poll

from gpufinops.localcluster import LocalCluster, load_pools, port_is_free
from gpufinops.localcluster.probes import http_get, http_ok

K8S_VERSION = "v1.37.2"
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


@pytest.fixture
def namespace(kubectl: KubectlRun) -> Iterator[str]:
    """A fresh namespace; its workloads are deleted (and waited for) after the test."""
    name = f"lc-{uuid.uuid4().hex[:8]}"
    ok(kubectl("create", "namespace", name))
    # Pods are admitted once the namespace's default ServiceAccount exists.
    ok(kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s"))
    yield name
    # Free the fake GPUs at once; the namespace itself may linger a few seconds.
    kubectl("delete", "deployments,pods", "--all", "-n", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "namespace", name, "--wait=false")


def _gpu_pod_spec(pool: str, gpus: int) -> dict[str, Any]:
    return {
        "nodeSelector": {"gpufinops.dev/pool": pool},
        "tolerations": [KWOK_TOLERATION],
        "containers": [
            {
                "name": "main",
                "image": "registry.invalid/gpu-test:1",
                "resources": {
                    "requests": {"nvidia.com/gpu": str(gpus)},
                    "limits": {"nvidia.com/gpu": str(gpus)},
                },
            }
        ],
    }


def test_apiserver_reports_its_version(kubectl: KubectlRun) -> None:
    version = _json(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == K8S_VERSION


def test_apiserver_requires_authentication(cluster: LocalCluster) -> None:
    assert http_get(f"{cluster.server_url}/api/v1/nodes", verify=False) is None


def test_fake_gpu_nodes_are_ready_per_pool(kubectl: KubectlRun) -> None:
    nodes = _json(kubectl("get", "nodes", "-l", "type=kwok", "-o", "json"))["items"]
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by_pool.setdefault(node["metadata"]["labels"]["gpufinops.dev/pool"], []).append(node)
    pools = load_pools()
    assert {p.name for p in pools} == {"a100-on-demand", "l4-spot", "l4-on-demand"}
    assert set(by_pool) == {p.name for p in pools}
    for pool in pools:
        assert len(by_pool[pool.name]) == pool.count, pool.name
        for node in by_pool[pool.name]:
            labels = node["metadata"]["labels"]
            assert labels["node.kubernetes.io/instance-type"] == pool.instance_type
            assert labels["karpenter.sh/capacity-type"] == pool.capacity_type
            assert labels["nvidia.com/gpu.product"] == pool.gpu_product
            assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
            taints = node["spec"]["taints"]
            assert {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"} in taints
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == str(pool.gpus)
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", node["metadata"]["name"]


def test_expected_pools_and_shapes() -> None:
    shapes = {(p.name, p.count, p.instance_type, p.gpus, p.capacity_type) for p in load_pools()}
    assert shapes == {
        ("a100-on-demand", 2, "p4d.24xlarge", 8, "on-demand"),
        ("l4-spot", 3, "g6.12xlarge", 4, "spot"),
        ("l4-on-demand", 1, "g6.12xlarge", 4, "on-demand"),
    }


def test_system_namespace_exists(kubectl: KubectlRun) -> None:
    ok(kubectl("get", "namespace", "gpufinops-system"))


def test_gpu_deployment_runs_on_spot_l4_nodes(kubectl: KubectlRun, namespace: str) -> None:
    deployment = deployment_manifest("gpu-test", namespace, _gpu_pod_spec("l4-spot", 1), replicas=3)
    ok(kubectl("apply", "-f", "-", input=json.dumps(deployment)))
    ok(kubectl("wait", "deployment/gpu-test", "-n", namespace,
               "--for=condition=Available", "--timeout=90s"))  # fmt: skip
    ok(kubectl("wait", "pods", "-l", "app=gpu-test", "-n", namespace,
               "--for=jsonpath={.status.phase}=Running", "--timeout=60s"))  # fmt: skip
    pods = _json(kubectl("get", "pods", "-l", "app=gpu-test", "-n", namespace, "-o", "json"))
    assert len(pods["items"]) == 3
    spot_nodes = set(
        ok(kubectl("get", "nodes", "-l", "gpufinops.dev/pool=l4-spot", "-o", "name")).split()
    )
    for pod in pods["items"]:
        assert pod["status"]["phase"] == "Running"
        assert f"node/{pod['spec']['nodeName']}" in spot_nodes


def test_scheduler_honours_gpu_capacity(kubectl: KubectlRun, namespace: str) -> None:
    # An l4-spot node has 4 GPUs: a pod asking for 5 can never be placed there.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "too-big", "namespace": namespace},
        "spec": _gpu_pod_spec("l4-spot", 5),
    }
    ok(kubectl("apply", "-f", "-", input=json.dumps(pod)))
    ok(kubectl("wait", "pod/too-big", "-n", namespace,
               "--for=condition=PodScheduled=false", "--timeout=60s"))  # fmt: skip
    got = _json(kubectl("get", "pod/too-big", "-n", namespace, "-o", "json"))
    scheduled = next(c for c in got["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in scheduled["message"]


def test_prometheus_is_ready_and_answers_a_query(cluster: LocalCluster) -> None:
    assert http_ok(f"{cluster.prometheus_url}/-/ready")
    results: list[Any] = []

    def self_scraped() -> bool:
        body = http_get(f"{cluster.prometheus_url}/api/v1/query?query=up")
        if body is None:
            return False
        answer = json.loads(body)
        assert answer["status"] == "success"
        results[:] = answer["data"]["result"]
        return bool(results)

    # The first scrape happens within one scrape interval (5s) of start-up.
    poll(self_scraped, "Prometheus to scrape itself", deadline=30)
    assert any(r["metric"].get("job") == "prometheus" and r["value"][1] == "1" for r in results)


def test_up_is_idempotent_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "cluster")
    try:
        local.up()
        pids = local.pids()
        assert all(pid is not None for pid in pids.values()), pids
        again = local.up()
        assert local.pids() == pids
        assert again["total"] < 30
        apiserver_port = int(local.server_url.rsplit(":", 1)[1])
    finally:
        local.down()
    assert all(pid is None for pid in local.pids().values())
    for name, pid in pids.items():
        assert pid is not None
        assert not _alive(pid), f"{name} (pid {pid}) still running"
    assert list((local.state_dir / "run").glob("*.pid")) == []
    assert port_is_free(apiserver_port)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
