"""Training Jobs on spot pools, on the real control plane: the job controller, the
scheduler and KWOK nodes. A Job lands on spot; an interruption notice (a node
taint, then the pod drained away) is survived and counted; at maxInterruptions the
Job moves to on-demand; a user's own suspended Job (jobRef) is placed the same way.

The test brings its own KWOK pools (`train-spot`, `train-on-demand`) so the shared
pools stay untouched, and removes them afterwards. KWOK completes Job pods after the
delay in their `pod-complete.stage.kwok.x-k8s.io/delay` annotation: a day here.
"""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.operator import RunningOperator, running_operator

from gpufinops.localcluster.nodes import NodePool, node_manifest

NS = "training-it"
SPOT = NodePool("train-spot", 0, "g6.12xlarge", "spot", "NVIDIA-L4", 4, "48", "192Gi", 110,
                "us-east-1b")  # fmt: skip
ON_DEMAND = NodePool("train-on-demand", 0, "g6.12xlarge", "on-demand", "NVIDIA-L4", 4, "48",
                     "192Gi", 110, "us-east-1a")  # fmt: skip
SPOT_NODES = ["train-spot-0", "train-spot-1", "train-spot-2"]
ON_DEMAND_NODES = ["train-on-demand-0"]
NOTICE = "aws-node-termination-handler/spot-itn"
CONFIG = {
    "nodePools": [
        {"name": p.name, "selector": {"gpufinops.dev/pool": p.name},
         "instanceType": p.instance_type, "capacityType": p.capacity_type}
        for p in (SPOT, ON_DEMAND)
    ]
}  # fmt: skip
DEADLINE = 60.0


def _poll(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}\n{_state()}")
        time.sleep(0.25)  # polling an observable condition, with a deadline


_STATE: list[Callable[[], str]] = []


def _state() -> str:
    """What the cluster looked like when a wait timed out (for the failure message)."""
    return "\n".join(describe() for describe in _STATE)


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _pod_template(job: str) -> dict[str, Any]:
    return {
        "metadata": {
            "annotations": {
                "pod-complete.stage.kwok.x-k8s.io/delay": "24h",
                # kwok draws the delay up to its default 5 s jitter unless the jitter is as long
                "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "24h",
            }
        },
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
            "containers": [
                {
                    "name": "train",
                    "image": f"example.com/{job}:1",
                    "resources": {"limits": {"nvidia.com/gpu": 4}},
                }
            ],
        },
    }


def _workload(name: str, training: dict[str, Any]) -> str:
    return yaml.safe_dump({
        "apiVersion": "gpufinops.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "Training",
            "costAllocation": {"team": "research"},
            "nodePools": [SPOT.name, ON_DEMAND.name],
            "training": {"expectedDurationSeconds": 36000, "checkpoint": {"intervalSeconds": 600},
                         **training},
        },
    })  # fmt: skip


@pytest.fixture(scope="module")
def pools(kubectl) -> Iterator[None]:
    for pool, names in ((SPOT, SPOT_NODES), (ON_DEMAND, ON_DEMAND_NODES)):
        for name in names:
            _ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(node_manifest(pool, name))))
    for name in SPOT_NODES + ON_DEMAND_NODES:
        _ok(kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s"))
    _ok(kubectl("create", "namespace", NS))
    try:
        yield
    finally:
        kubectl("delete", "aiworkloads,jobs", "--all", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "node", *SPOT_NODES, *ON_DEMAND_NODES, "--wait=true", "--timeout=60s")


@pytest.fixture(scope="module", autouse=True)
def describe_on_failure(kubectl) -> Iterator[None]:
    def describe() -> str:
        jobs = kubectl("get", "jobs", "-n", NS, "-o", "yaml").stdout
        pods = kubectl("get", "pods", "-n", NS, "-o", "wide").stdout
        aiw = kubectl("get", "aiw", "-n", NS, "-o", "yaml").stdout
        return f"jobs:\n{jobs}\npods:\n{pods}\nworkloads:\n{aiw}"

    _STATE.append(describe)
    yield
    _STATE.clear()


@pytest.fixture(scope="module")
def operator(pools: None, kubeconfig: Path, tmp_path_factory) -> Iterator[RunningOperator]:
    workdir = tmp_path_factory.mktemp("training")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with running_operator(
        kubeconfig, workdir, "--config", str(config), "--namespace", NS, "--sync-seconds", "1"
    ) as op:
        yield op


def _get(kubectl, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(_ok(kubectl("get", kind, name, "-n", NS, "-o", "json"))))


def _placement(kubectl, name: str) -> dict[str, Any]:
    return dict((_get(kubectl, "aiw", name).get("status") or {}).get("placement") or {})


def _running_pod(kubectl, job: str, nodes: list[str]) -> dict[str, Any] | None:
    pods = json.loads(_ok(kubectl(
        "get", "pods", "-n", NS, "-l", f"batch.kubernetes.io/job-name={job}", "-o", "json"
    )))["items"]  # fmt: skip
    for pod in pods:
        running = pod["status"].get("phase") == "Running"
        gone = pod["metadata"].get("deletionTimestamp")
        if running and not gone and pod["spec"].get("nodeName") in nodes:
            return dict(pod)
    return None


def _events(kubectl, name: str) -> list[str]:
    items = json.loads(_ok(kubectl(
        "get", "events", "-n", NS, "-o", "json",
        "--field-selector", f"involvedObject.name={name},involvedObject.kind=AIWorkload",
    )))["items"]  # fmt: skip
    return [e["reason"] for e in items]


def _interrupt(kubectl, node: str) -> None:
    _ok(kubectl("taint", "node", node, f"{NOTICE}=true:NoSchedule"))


def _untaint(kubectl) -> None:
    for node in SPOT_NODES:
        kubectl("taint", "node", node, f"{NOTICE}:NoSchedule-")


def test_job_lands_on_spot_survives_an_interruption_and_falls_back_at_the_limit(
    operator: RunningOperator, kubectl
) -> None:
    template = {"parallelism": 1, "backoffLimit": 6, "template": _pod_template("train")}
    training = {"jobTemplate": template, "spot": {"maxInterruptions": 2}}
    _ok(kubectl("apply", "-f", "-", input=_workload("train", training)))
    try:
        job = _poll(
            lambda: (
                _get(kubectl, "job", "train")
                if kubectl("get", "job", "train", "-n", NS).returncode == 0
                else None
            ),
            "the Job to be created",
        )
        assert job["metadata"]["ownerReferences"][0]["kind"] == "AIWorkload"
        rules = job["spec"]["podFailurePolicy"]["rules"]
        assert rules[0] == {"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget", "status": "True"}]}  # fmt: skip

        first = _poll(lambda: _running_pod(kubectl, "train", SPOT_NODES), "a pod on spot")
        placement = _poll(lambda: _placement(kubectl, "train").get("pool") and _placement(
            kubectl, "train"), "status.placement")  # fmt: skip
        assert placement["pool"] == SPOT.name and placement["capacityType"] == "spot"
        assert "SpotPlaced" in _events(kubectl, "train")

        # Interruption 1: the notice taint lands, then the pod is drained away.
        _interrupt(kubectl, first["spec"]["nodeName"])
        _poll(lambda: _placement(kubectl, "train").get("interruptions") == 1,
              "the first interruption to be counted")  # fmt: skip
        _ok(kubectl("delete", "pod", first["metadata"]["name"], "-n", NS, "--wait=false"))
        others = [n for n in SPOT_NODES if n != first["spec"]["nodeName"]]
        second = _poll(lambda: _running_pod(kubectl, "train", others),
                       "the Job to run again on another spot node")  # fmt: skip
        placement = _placement(kubectl, "train")
        assert placement["interruptions"] == 1
        assert placement["interruptionsByReason"] == {"SpotInterruptionNotice": 1}
        assert placement["pool"] == SPOT.name
        assert "SpotInterrupted" in _events(kubectl, "train")

        # Interruption 2 reaches maxInterruptions: re-suspend, re-place, unsuspend.
        _interrupt(kubectl, second["spec"]["nodeName"])
        _poll(lambda: _running_pod(kubectl, "train", ON_DEMAND_NODES),
              "the Job to run on on-demand")  # fmt: skip
        placement = _poll(
            lambda: (p := _placement(kubectl, "train")).get("pool") == ON_DEMAND.name and p,
            "status.placement to show on-demand",
        )
        assert placement["interruptions"] == 2
        assert placement["onDemandOnly"] is True
        assert placement["fallbackReason"] == "MaxInterruptions"
        assert placement["attempts"] == 2
        job = _get(kubectl, "job", "train")
        assert job["spec"]["suspend"] is False
        selector = job["spec"]["template"]["spec"]["nodeSelector"]
        assert selector == {"gpufinops.dev/pool": ON_DEMAND.name}
        _poll(lambda: "FellBackToOnDemand" in _events(kubectl, "train"), "FellBackToOnDemand")
        ready = next(c for c in _get(kubectl, "aiw", "train")["status"]["conditions"]
                     if c["type"] == "Ready")  # fmt: skip
        assert ready["status"] == "True" and ready["reason"] == "Placed"
    finally:
        _untaint(kubectl)
        kubectl("delete", "aiw", "train", "-n", NS, "--wait=true", "--timeout=60s")


def test_a_users_suspended_job_is_placed_the_same_way(operator: RunningOperator, kubectl) -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "mine", "namespace": NS},
        "spec": {"suspend": True, "template": _pod_template("mine"),
                 "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [
                     {"type": "DisruptionTarget", "status": "True"}]}]}},
    }  # fmt: skip
    _ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(job)))
    _ok(kubectl("apply", "-f", "-", input=_workload("byref", {"jobRef": {"name": "mine"}})))
    try:
        pod = _poll(lambda: _running_pod(kubectl, "mine", SPOT_NODES), "the user's Job on spot")
        assert pod["metadata"]["labels"]["gpufinops.dev/pool"] == SPOT.name
        placed = _get(kubectl, "job", "mine")
        assert placed["spec"]["suspend"] is False
        assert placed["spec"]["template"]["spec"]["nodeSelector"] == {
            "gpufinops.dev/pool": SPOT.name
        }
        # The user's own tolerations stay.
        tolerations = placed["spec"]["template"]["spec"]["tolerations"]
        assert {"key": "kwok.x-k8s.io/node", "operator": "Exists"} in tolerations
        placement = _poll(lambda: _placement(kubectl, "byref"), "status.placement")
        assert placement["job"] == "mine" and placement["pool"] == SPOT.name
        assert _get(kubectl, "aiw", "byref")["status"]["target"] == "Job/mine"
    finally:
        kubectl("delete", "aiw", "byref", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "job", "mine", "-n", NS, "--wait=true", "--timeout=60s")
