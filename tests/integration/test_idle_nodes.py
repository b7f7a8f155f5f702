"""Idle GPU nodes are shut down after their timer, safely, and a crashed shutdown resumes.

The test adds its own KWOK GPU pool (`idle-test`) so the shared pools stay intact,
runs the operator cluster-wide with a config whose only idle-enabled pool is that
one (3 s timer, 1 s interval), and watches real pods, PDBs and nodes."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.idle_nodes import (
    CONFIG,
    IDLE_AFTER,
    add_node,
    node_annotation,
    node_exists,
    node_taints,
)
from tests.support.kube import deployment_manifest, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll

NS = "idle-test"
TAINT = {"key": "gpufinops.dev/idle-shutdown", "value": "true", "effect": "NoSchedule"}


def _deployment(kubectl, name: str, node: str, gpus: int, annotations=None, labels=None):
    pod_spec = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
        "containers": [{
            "name": "main", "image": "registry.invalid/app:1",
            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {},
        }],
    }  # fmt: skip
    manifest = deployment_manifest(
        name, NS, pod_spec, pod_labels=labels, pod_annotations=annotations
    )
    ok(kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    ok(kubectl("wait", "-n", NS, f"deployment/{name}", "--for=jsonpath={.status.readyReplicas}=1",
               "--timeout=60s"))  # fmt: skip


@pytest.fixture(scope="module")
def workloads(kubectl) -> Iterator[None]:
    # A run just before may still be deleting it (teardown does not wait).
    kubectl("wait", "--for=delete", f"namespace/{NS}", "--timeout=120s")
    ok(kubectl("create", "namespace", NS))
    for node in ("idle-empty", "idle-pdb", "idle-dnd", "idle-busy"):
        add_node(kubectl, node)
    # a CPU pod whose PodDisruptionBudget allows no disruption
    _deployment(kubectl, "guarded", "idle-pdb", 0, labels={"guard": "yes"})
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "guarded", "namespace": NS},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"guard": "yes"}}}}  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=json.dumps(pdb)))
    ok(kubectl("wait", "-n", NS, "pdb/guarded", "--for=jsonpath={.status.currentHealthy}=1",
               "--timeout=60s"))  # fmt: skip
    _deployment(
        kubectl, "pinned", "idle-dnd", 0, annotations={"gpufinops.dev/do-not-disrupt": "true"}
    )
    _deployment(kubectl, "trainer", "idle-busy", 1)
    yield
    # Leave the shared cluster as it was: other tests count the nodes of each pool.
    kubectl("delete", "deployments,pdb", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    kubectl("delete", "nodes", "-l", "gpufinops.dev/pool=idle-test", "--wait=true",
            "--timeout=60s")  # fmt: skip
    kubectl("delete", "namespace", NS, "--wait=false")


@pytest.fixture(scope="module")
def operator(workloads, kubeconfig: Path, tmp_path_factory) -> Iterator[RunningOperator]:
    root = tmp_path_factory.mktemp("idle-operator")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with running_operator(kubeconfig, root, "--config", str(config)) as op:
        yield op


def test_empty_node_is_shut_down_and_protected_ones_are_kept(operator, kubectl) -> None:
    poll(lambda: not node_exists(kubectl, "idle-empty"), "the empty node to be deleted")
    since = max(float(node_annotation(kubectl, n, "gpufinops.dev/idle-since") or 0)
                for n in ("idle-pdb", "idle-dnd"))  # fmt: skip
    assert since > 0, "the protected nodes are idle (no GPU pod) and timed"
    # let every protected node's timer expire and several intervals pass
    poll(lambda: time.time() > since + IDLE_AFTER + 4, "timers to expire", deadline=30)
    assert node_exists(kubectl, "idle-pdb"), (
        "a PodDisruptionBudget allowing no disruption protects it"
    )
    assert node_exists(kubectl, "idle-dnd"), "gpufinops.dev/do-not-disrupt protects it"
    assert node_exists(kubectl, "idle-busy"), "a running GPU pod keeps it busy"
    for node in ("idle-pdb", "idle-dnd", "idle-busy"):
        assert "gpufinops.dev/idle-shutdown" not in node_taints(kubectl, node)
    shut = operator.metric("gpufinops_nodes_shut_down_total", pool="idle-test")
    assert shut >= 1, f"metric {shut}; operator log tail:\n{operator.log.read_text()[-4000:]}"
    # no finalizer of ours on nodes: they must stay deletable while the operator is down
    finalizers = kubectl("get", "node", "idle-pdb", "-o", "jsonpath={.metadata.finalizers}")
    assert finalizers.stdout == ""


def test_node_is_shut_down_timer_after_its_last_gpu_pod_left(operator, kubectl) -> None:
    ok(kubectl("scale", "-n", NS, "deployment/trainer", "--replicas=0"))
    ok(kubectl("wait", "-n", NS, "pods", "-l", "app=trainer", "--for=delete", "--timeout=60s"))
    gone = time.time()
    poll(lambda: not node_exists(kubectl, "idle-busy"), "the node to be deleted")
    elapsed = time.time() - gone
    print(f"last GPU pod gone -> node deleted: {elapsed:.1f}s (timer {IDLE_AFTER}s, tick 1s)")
    assert elapsed < IDLE_AFTER + 10


def test_a_crash_mid_drain_resumes_or_untaints(operator, kubectl) -> None:
    # As an operator killed while draining leaves it: tainted, phase recorded.
    phase = {"gpufinops.dev/idle-shutdown-phase": "Draining",
             "gpufinops.dev/drain-started": f"{time.time():.3f}"}  # fmt: skip
    add_node(kubectl, "idle-resume", annotations=phase, taint=True, wait=False)
    poll(lambda: not node_exists(kubectl, "idle-resume"), "the drain to finish with a shutdown")
    # Killed after tainting, and a GPU pod had landed meanwhile: un-taint, keep the node.
    add_node(kubectl, "idle-abort")
    _deployment(kubectl, "landed", "idle-abort", 1)
    # Phase and taint in one write, as the crash left them (two writes would let the
    # operator see a phase without the taint in between).
    taints = json.loads(kubectl("get", "node", "idle-abort", "-o",
                                "jsonpath={.spec.taints}").stdout or "[]")  # fmt: skip
    crashed = {
        "metadata": {"annotations": {"gpufinops.dev/idle-shutdown-phase": "Tainted"}},
        "spec": {"taints": [*taints, TAINT]},
    }
    ok(kubectl("patch", "node", "idle-abort", "--type=merge", "-p", json.dumps(crashed)))
    poll(lambda: "gpufinops.dev/idle-shutdown" not in node_taints(kubectl, "idle-abort"),
         "the taint to be removed")  # fmt: skip
    assert node_exists(kubectl, "idle-abort")
    assert node_annotation(kubectl, "idle-abort", "gpufinops.dev/idle-shutdown-phase") == ""


def test_our_taint_left_without_a_phase_is_lifted(operator, kubectl) -> None:
    # The phase annotation edited away by hand: nothing would ever lift the taint.
    add_node(kubectl, "idle-orphan")
    _deployment(kubectl, "orphan-work", "idle-orphan", 1)
    ok(kubectl("taint", "node", "idle-orphan", "gpufinops.dev/idle-shutdown=true:NoSchedule"))
    poll(lambda: "gpufinops.dev/idle-shutdown" not in node_taints(kubectl, "idle-orphan"),
         "the orphaned taint to be lifted")  # fmt: skip
    assert node_exists(kubectl, "idle-orphan")
