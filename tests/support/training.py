"""Training Jobs on the tests' own KWOK pools: what the Training integration tests share.

The tests bring their own pools, three spot nodes (``train-spot``) and one
on-demand node (``train-on-demand``), so that the shared pools stay untouched;
the ``training_pools`` fixture (``tests/integration/conftest.py``) adds them and
the namespace ``NS``, and removes them afterwards. KWOK completes Job pods after
the delay in their ``pod-complete.stage.kwok.x-k8s.io/delay`` annotation: a day
here, so that a Job keeps running for as long as a test wants.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml
from tests.support import kube
from tests.support.kube import KubectlRun, ok
from tests.support.operator import RunningOperator, running_operator

from gpufinops.localcluster.nodes import NodePool, node_manifest

NS = "training-it"
NOTICE = "aws-node-termination-handler/spot-itn"
"""The taint the AWS Node Termination Handler sets on a node about to be interrupted."""
SPOT = NodePool("train-spot", 0, "g6.12xlarge", "spot", "NVIDIA-L4", 4, "48", "192Gi", 110,
                "us-east-1b")  # fmt: skip
ON_DEMAND = NodePool("train-on-demand", 0, "g6.12xlarge", "on-demand", "NVIDIA-L4", 4, "48",
                     "192Gi", 110, "us-east-1a")  # fmt: skip
SPOT_NODES = ["train-spot-0", "train-spot-1", "train-spot-2"]
ON_DEMAND_NODES = ["train-on-demand-0"]
CONFIG = {
    "nodePools": [
        {"name": p.name, "selector": {"gpufinops.dev/pool": p.name},
         "instanceType": p.instance_type, "capacityType": p.capacity_type}
        for p in (SPOT, ON_DEMAND)
    ],
    "cost": {"intervalSeconds": 5},
}  # fmt: skip
"""The operator config naming the two pools (spend accounted every few seconds)."""


def add_pools(kubectl: KubectlRun) -> None:
    """The spot and on-demand nodes, Ready, and the namespace ``NS``."""
    for pool, names in ((SPOT, SPOT_NODES), (ON_DEMAND, ON_DEMAND_NODES)):
        for name in names:
            ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(node_manifest(pool, name))))
    for name in SPOT_NODES + ON_DEMAND_NODES:
        ok(kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s"))
    ok(kubectl("create", "namespace", NS))


def remove_pools(kubectl: KubectlRun) -> None:
    """Undo ``add_pools`` and whatever the tests left in ``NS``; failures are ignored.

    A test that failed before its own cleanup leaves workloads carrying the
    operator's finalizer and no operator to release it: their deletion would hang
    and the namespace stay Terminating for every later module, so the finalizers
    are dropped first."""
    listed = kubectl("get", "aiworkloads", "-n", NS, "-o", "name")
    for ref in listed.stdout.split() if listed.returncode == 0 else []:
        kubectl("patch", ref, "-n", NS, "--type=merge",
                "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    kubectl("delete", "aiworkloads,jobs", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")
    kubectl("delete", "node", *SPOT_NODES, *ON_DEMAND_NODES, "--wait=true", "--timeout=60s")


def describe(kubectl: KubectlRun) -> str:
    """The namespace's Jobs, pods and workloads: what a timed-out wait should show."""
    jobs = kubectl("get", "jobs", "-n", NS, "-o", "yaml").stdout
    pods = kubectl("get", "pods", "-n", NS, "-o", "wide").stdout
    aiw = kubectl("get", "aiw", "-n", NS, "-o", "yaml").stdout
    return f"jobs:\n{jobs}\npods:\n{pods}\nworkloads:\n{aiw}"


def start_operator(
    kubeconfig: Path, config: Path, log_dir: Path
) -> AbstractContextManager[RunningOperator]:
    """The operator for ``NS`` with ``config``, ticking every second; its log in ``log_dir``."""
    return running_operator(
        kubeconfig, log_dir, "--config", str(config), "--namespace", NS, "--sync-seconds", "1"
    )


def pod_template(job: str) -> dict[str, Any]:
    """A Job's pod: four GPUs, on KWOK nodes, running for a day."""
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


def workload_manifest(name: str, training: dict[str, Any]) -> str:
    """A Training AIWorkload on both pools, as YAML; ``training`` adds to its defaults."""
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


def get(kubectl: KubectlRun, kind: str, name: str) -> dict[str, Any]:
    """The object ``kind/name`` in ``NS``; it must exist."""
    return dict(json.loads(ok(kubectl("get", kind, name, "-n", NS, "-o", "json"))))


def placement_of(kubectl: KubectlRun, name: str) -> dict[str, Any]:
    """The workload's ``status.placement``, empty until the operator writes it."""
    return dict((get(kubectl, "aiw", name).get("status") or {}).get("placement") or {})


def _job_pods(kubectl: KubectlRun, job: str) -> list[dict[str, Any]]:
    """The pods the Job controls (its controller, not just its label)."""
    pods = json.loads(ok(kubectl(
        "get", "pods", "-n", NS, "-l", f"batch.kubernetes.io/job-name={job}", "-o", "json"
    )))["items"]  # fmt: skip
    return [
        dict(pod)
        for pod in pods
        if any(o.get("kind") == "Job" and o.get("name") == job and o.get("controller")
               for o in pod["metadata"].get("ownerReferences") or [])
    ]  # fmt: skip


def running_pod(kubectl: KubectlRun, job: str, nodes: list[str]) -> dict[str, Any] | None:
    """A pod of the Job (its controller, not just its label) running on one of ``nodes``
    and not being deleted, if any."""
    for pod in _job_pods(kubectl, job):
        running = pod["status"].get("phase") == "Running"
        gone = pod["metadata"].get("deletionTimestamp")
        if running and not gone and pod["spec"].get("nodeName") in nodes:
            return dict(pod)
    return None


def live_pod_nodes(kubectl: KubectlRun, job: str) -> list[str | None]:
    """The nodes of the Job's pods that are neither finished nor being deleted, sorted
    (None for one not scheduled yet): a Job placed twice would show a pod too many."""
    live = [
        pod["spec"].get("nodeName")
        for pod in _job_pods(kubectl, job)
        if pod["status"].get("phase") not in ("Succeeded", "Failed")
        and not pod["metadata"].get("deletionTimestamp")
    ]
    return sorted(live, key=lambda node: node or "")


def ready_of(kubectl: KubectlRun, name: str) -> dict[str, Any]:
    """The workload's Ready condition, empty until it has one."""
    conditions = (get(kubectl, "aiw", name).get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == "Ready"), {})


def event_reasons(kubectl: KubectlRun, name: str) -> list[str]:
    """The reasons of the workload's Events in ``NS``, one per Event."""
    return kube.event_reasons(kubectl, NS, name)
