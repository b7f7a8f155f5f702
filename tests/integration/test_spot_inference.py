"""Spot replicas of an Inference Deployment (``spec.inference.spot``) end to end: a real
API server, scheduler and controllers, KWOK GPU nodes in one on-demand and two spot
pools of their own, a real Prometheus scraping a test exporter, and ``gpufinops run``.

The service needs 5 replicas (``minReplicas`` = ``maxReplicas``): 1 on-demand base
and 4 spot, 2 per pool. Each spot pool is one node of 4 GPUs, so one pool can take
every spot replica when the other is lost; the on-demand pool has room for all 5.
Each test has its own namespace (so its own pool records); nodes are shared and
put back as they were. Every wait polls a condition until a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.exporter import Exporter
from tests.support.kube import KubectlRun, deployment_manifest, event_reasons, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import describe_on_timeout, poll

from gpufinops.localcluster.nodes import NodePool, node_manifest

ON_DEMAND = NodePool("si-on-demand", 0, "g6.12xlarge", "on-demand", "NVIDIA-L4", 4, "48",
                     "192Gi", 110, "us-east-1a")  # fmt: skip
SPOT_A = NodePool("si-spot-a", 0, "g6.12xlarge", "spot", "NVIDIA-L4", 4, "48", "192Gi", 110,
                  "us-east-1b")  # fmt: skip
SPOT_B = NodePool("si-spot-b", 0, "g6.12xlarge", "spot", "NVIDIA-L4", 4, "48", "192Gi", 110,
                  "us-east-1c")  # fmt: skip
NODES = {ON_DEMAND: ["si-on-demand-0", "si-on-demand-1"], SPOT_A: ["si-spot-a-0"],
         SPOT_B: ["si-spot-b-0"]}  # fmt: skip
CONFIG = {
    "nodePools": [
        {"name": p.name, "selector": {"gpufinops.dev/pool": p.name},
         "instanceType": p.instance_type, "capacityType": p.capacity_type}
        for p in NODES
    ],
}  # fmt: skip
REPLICAS = 5
UNAVAILABLE_SECONDS = 60
"""The shortest the API allows: how long a lost pool is left alone."""


@pytest.fixture(scope="module")
def pools(kubectl: KubectlRun) -> Iterator[None]:
    for pool, names in NODES.items():
        for name in names:
            ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(node_manifest(pool, name))))
    for names in NODES.values():
        for name in names:
            ok(kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s"))
    try:
        yield
    finally:
        all_nodes = [n for names in NODES.values() for n in names]
        kubectl("delete", "node", *all_nodes, "--wait=true", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path, prometheus: str, pools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    where = tmp_path_factory.mktemp("spot-inference")
    config = where / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with running_operator(
        kubeconfig, where, "--config", str(config), "--namespace", "si-*",
        "--prometheus-url", prometheus, "--sync-seconds", "1",
    ) as op:  # fmt: skip
        yield op


@pytest.fixture
def ns(request: pytest.FixtureRequest, kubectl: KubectlRun, exporter: Exporter) -> Iterator[str]:
    """The test's namespace, holding ``llm`` and its AIWorkload; removed after the test
    (finalizers dropped, so a failed test leaves nothing behind)."""
    name = "si-" + request.node.name.split("[")[-1].rstrip("]").replace("_", "-")[-40:]
    name = name.lower().strip("-")
    ok(kubectl("create", "namespace", name))
    labels = {"namespace": name, "pod": "llm-7d9f8c6b5-x2x4z"}
    exporter.set("vllm:num_requests_waiting", labels, 0)
    exporter.set("vllm:num_requests_running", labels, 1)
    exporter.set_rate("vllm:request_success_total", labels, 1.0)
    with describe_on_timeout(lambda: _describe(kubectl, name)):
        yield name
    # The workload goes first, while the operator runs to release its finalizer
    # (it would re-add one dropped before); dropped only if that fails.
    gone = kubectl("delete", "aiw", "llm", "-n", name, "--wait=true", "--timeout=30s")
    if gone.returncode != 0:
        kubectl("patch", "aiw", "llm", "-n", name, "--type=merge",
                "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    kubectl("delete", "namespace", name, "--wait=true", "--timeout=60s")
    for node in NODES[SPOT_A] + NODES[SPOT_B]:
        kubectl("uncordon", node)


def _describe(kubectl: KubectlRun, ns: str) -> str:
    pods = kubectl("get", "pods", "-n", ns, "-o", "wide").stdout
    deployments = kubectl("get", "deployments", "-n", ns).stdout
    aiw = kubectl("get", "aiw", "llm", "-n", ns, "-o", "jsonpath={.status}").stdout
    events = kubectl("get", "events", "-n", ns).stdout
    return f"pods:\n{pods}\ndeployments:\n{deployments}\nstatus: {aiw}\nevents:\n{events}"


def _llm(ns: str) -> dict[str, Any]:
    """``llm`` on the on-demand pool: one pod, one GPU."""
    return deployment_manifest("llm", ns, {
        "nodeSelector": {"gpufinops.dev/pool": ON_DEMAND.name},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                        "resources": {"limits": {"nvidia.com/gpu": 1}}}],
    })  # fmt: skip


def _workload(pools: list[str], pending_timeout: int = 30) -> dict[str, Any]:
    return {
        "apiVersion": "gpufinops.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": "llm"},
        "spec": {
            "type": "Inference",
            "costAllocation": {"team": "serving"},
            "inference": {
                "targetRef": {"name": "llm"},
                "minReplicas": REPLICAS,
                "maxReplicas": REPLICAS,
                "forecast": {"enabled": False},
                "spot": {
                    "pools": pools,
                    "onDemandBaseReplicas": 1,
                    "overprovision": {"minExtraReplicas": 0, "byPreemptionRate": False},
                    "unavailableSeconds": UNAVAILABLE_SECONDS,
                    "pendingTimeoutSeconds": pending_timeout,
                },
            },
        },
    }


def _start(kubectl: KubectlRun, ns: str, workload: dict[str, Any]) -> None:
    for manifest in (_llm(ns), workload):
        ok(kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest)))


def _get(kubectl: KubectlRun, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    got = kubectl("get", kind, name, "-n", ns, "-o", "json")
    return json.loads(got.stdout) if got.returncode == 0 else None


def _replicas(kubectl: KubectlRun, ns: str, name: str) -> int | None:
    found = _get(kubectl, ns, "deployment", name)
    return None if found is None else int(found["spec"].get("replicas", 1))


def _spot_status(kubectl: KubectlRun, ns: str) -> dict[str, Any]:
    found = _get(kubectl, ns, "aiw", "llm") or {}
    return dict((found.get("status") or {}).get("spot") or {})


def _pool_status(kubectl: KubectlRun, ns: str, pool: str) -> dict[str, Any]:
    for item in _spot_status(kubectl, ns).get("pools") or []:
        if item["name"] == pool:
            return dict(item)
    return {}


def _ready_pods(kubectl: KubectlRun, ns: str) -> dict[str, int]:
    """Ready pods of the service (target and children), not terminating, per node pool."""
    listed = json.loads(ok(kubectl("get", "pods", "-n", ns, "-l", "app=llm", "-o", "json")))
    nodes = json.loads(ok(kubectl("get", "nodes", "-o", "json")))["items"]
    pool_of = {n["metadata"]["name"]: n["metadata"]["labels"].get("gpufinops.dev/pool")
               for n in nodes}  # fmt: skip
    out: dict[str, int] = {}
    for pod in listed["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in pod.get("status", {}).get("conditions") or [])  # fmt: skip
        node = pod["spec"].get("nodeName")
        if ready and node:
            pool = str(pool_of.get(node))
            out[pool] = out.get(pool, 0) + 1
    return out


def _pods_on(kubectl: KubectlRun, ns: str, node: str) -> list[str]:
    listed = json.loads(ok(kubectl("get", "pods", "-n", ns, "-o", "json",
                                   "--field-selector", f"spec.nodeName={node}")))  # fmt: skip
    return [p["metadata"]["name"] for p in listed["items"]]


def _spread(kubectl: KubectlRun, ns: str) -> bool:
    """The steady state: the base on-demand, 2 spot replicas per pool, all ready."""
    return (
        _replicas(kubectl, ns, "llm") == 1
        and _replicas(kubectl, ns, f"llm-spot-{SPOT_A.name}") == 2
        and _replicas(kubectl, ns, f"llm-spot-{SPOT_B.name}") == 2
        and _ready_pods(kubectl, ns) == {ON_DEMAND.name: 1, SPOT_A.name: 2, SPOT_B.name: 2}
    )


def test_the_target_keeps_the_base_and_each_spot_pool_gets_a_child(
    operator: RunningOperator, kubectl: KubectlRun, ns: str
) -> None:
    _start(kubectl, ns, _workload([SPOT_A.name, SPOT_B.name]))
    poll(lambda: _spread(kubectl, ns), "1 on-demand and 2+2 spot replicas, all ready")
    child = _get(kubectl, ns, "deployment", f"llm-spot-{SPOT_A.name}")
    assert child is not None
    owner = child["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("AIWorkload", "llm", True)
    pod = child["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"gpufinops.dev/pool": SPOT_A.name}
    assert pod["metadata"]["labels"]["app"] == "llm"  # the Service's selector still matches
    assert child["spec"]["selector"]["matchLabels"]["gpufinops.dev/spot-pool"] == SPOT_A.name
    spot = poll(lambda: _spot_status(kubectl, ns).get("onDemand", {}).get("fallback") == 0
                and _spot_status(kubectl, ns), "status.spot with no stand-ins")  # fmt: skip
    assert spot["onDemand"]["base"] == 1 and spot["desiredReplicas"] == REPLICAS
    assert {p["name"]: p["replicas"] for p in spot["pools"]} == {SPOT_A.name: 2, SPOT_B.name: 2}
    # The target's template changes: the children follow it.
    ok(kubectl("set", "image", "deployment/llm", "-n", ns, "vllm=vllm/vllm-openai:v0.11.1"))
    poll(lambda: _child_image(kubectl, ns, SPOT_B.name) == "vllm/vllm-openai:v0.11.1",
         "the child to follow the target's template")  # fmt: skip


def _child_image(kubectl: KubectlRun, ns: str, pool: str) -> str:
    found = _get(kubectl, ns, "deployment", f"llm-spot-{pool}") or {}
    containers = found.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return str(containers[0]["image"]) if containers else ""


NOTICES = {
    "nth": "aws-node-termination-handler/spot-itn",
    "karpenter": "karpenter.sh/disrupted",
    "gke": "cloud.google.com/impending-node-termination",
}


@pytest.mark.parametrize("notice", list(NOTICES))
def test_an_interruption_notice_drains_the_node_and_replaces_its_replicas(
    operator: RunningOperator, kubectl: KubectlRun, ns: str, notice: str
) -> None:
    _start(kubectl, ns, _workload([SPOT_A.name, SPOT_B.name]))
    poll(lambda: _spread(kubectl, ns), "1 on-demand and 2+2 spot replicas, all ready")
    node = NODES[SPOT_A][0]
    taint = f"{NOTICES[notice]}=true:NoSchedule"
    ok(kubectl("taint", "node", node, taint))
    try:
        poll(lambda: not _pods_on(kubectl, ns, node), f"{node}'s replicas to be drained")
        # Replaced elsewhere: the other spot pool takes the spot share, the service is whole.
        poll(lambda: sum(_ready_pods(kubectl, ns).values()) == REPLICAS
             and _ready_pods(kubectl, ns).get(SPOT_A.name, 0) == 0,
             "5 ready replicas again, none in the interrupted pool")  # fmt: skip
        assert "SpotInterrupted" in event_reasons(kubectl, ns, "llm")
        record = _pool_status(kubectl, ns, SPOT_A.name)
        assert record["preemptions"] == 1 and record["reason"] == "Interrupted"
        assert record["unavailableUntil"]
        assert _pool_status(kubectl, ns, SPOT_B.name)["preemptions"] == 0
    finally:
        kubectl("taint", "node", node, f"{NOTICES[notice]}-")


def test_a_pool_without_spot_capacity_is_stood_in_for_by_on_demand_until_it_returns(
    operator: RunningOperator, kubectl: KubectlRun, ns: str
) -> None:
    spot_nodes = NODES[SPOT_A] + NODES[SPOT_B]
    for node in spot_nodes:
        ok(kubectl("cordon", node))
    _start(kubectl, ns, _workload([SPOT_A.name, SPOT_B.name], pending_timeout=10))
    # The spot replicas stay Pending past the timeout: on-demand stands in for all 4.
    poll(lambda: _ready_pods(kubectl, ns) == {ON_DEMAND.name: REPLICAS},
         "5 ready on-demand replicas while no spot can be placed")  # fmt: skip
    assert _replicas(kubectl, ns, "llm") == REPLICAS
    reasons = event_reasons(kubectl, ns, "llm")
    assert "SpotUnavailable" in reasons and "SpotFallback" in reasons
    assert _pool_status(kubectl, ns, SPOT_A.name)["reason"] == "NoCapacity"
    assert _spot_status(kubectl, ns)["onDemand"]["fallback"] == 4
    # Capacity returns; once the pools are tried again and their replicas are ready,
    # the stand-ins go, and never before: the service keeps 5 ready replicas throughout.
    for node in spot_nodes:
        ok(kubectl("uncordon", node))

    def steady_or_whole() -> bool:
        ready = _ready_pods(kubectl, ns)
        assert sum(ready.values()) >= REPLICAS, f"capacity dropped: {ready}"
        return _spread(kubectl, ns)

    poll(steady_or_whole, "spot replicas back and the stand-ins removed",
         deadline=UNAVAILABLE_SECONDS + 60)  # fmt: skip
    assert "SpotRecovered" in event_reasons(kubectl, ns, "llm")
    assert _spot_status(kubectl, ns)["onDemand"]["fallback"] == 0


def test_removing_spot_folds_the_replicas_back_into_the_target(
    operator: RunningOperator, kubectl: KubectlRun, ns: str
) -> None:
    _start(kubectl, ns, _workload([SPOT_A.name, SPOT_B.name]))
    poll(lambda: _spread(kubectl, ns), "1 on-demand and 2+2 spot replicas, all ready")
    ok(kubectl("patch", "aiw", "llm", "-n", ns, "--type=json",
               "-p", '[{"op": "remove", "path": "/spec/inference/spot"}]'))  # fmt: skip

    def folded() -> bool:
        ready = _ready_pods(kubectl, ns)
        assert sum(ready.values()) >= REPLICAS, f"capacity dropped: {ready}"
        return (
            _get(kubectl, ns, "deployment", f"llm-spot-{SPOT_A.name}") is None
            and _get(kubectl, ns, "deployment", f"llm-spot-{SPOT_B.name}") is None
            and ready == {ON_DEMAND.name: REPLICAS}
        )

    poll(folded, "the target to hold all 5 replicas and the children to be gone")
    poll(lambda: not _spot_status(kubectl, ns), "status.spot to be cleared")


def test_a_spot_pool_that_is_on_demand_is_refused_and_nothing_is_created(
    operator: RunningOperator, kubectl: KubectlRun, ns: str
) -> None:
    _start(kubectl, ns, _workload([SPOT_A.name, ON_DEMAND.name]))

    def invalid() -> str:
        found = _get(kubectl, ns, "aiw", "llm") or {}
        for c in (found.get("status") or {}).get("conditions") or []:
            if c["type"] == "InvalidSpec" and c["status"] == "True":
                return str(c["message"])
        return ""

    message = poll(invalid, "the InvalidSpec condition")
    assert "spec.inference.spot.pools[1]" in message and "capacityType on-demand" in message
    listed = json.loads(ok(kubectl("get", "deployments", "-n", ns, "-o", "json")))
    assert [d["metadata"]["name"] for d in listed["items"]] == ["llm"]
    assert _replicas(kubectl, ns, "llm") == 1
