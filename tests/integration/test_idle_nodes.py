"""Idle GPU nodes are shut down after their timer, safely, and a crashed shutdown resumes.

The test adds its own KWOK GPU pool (`idle-test`) so the shared pools stay intact,
runs the operator cluster-wide with a config whose only idle-enabled pool is that
one (3 s timer, 1 s interval), and watches real pods, PDBs and nodes."""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.operator import RunningOperator, running_operator

from gpufinops.localcluster.nodes import NodePool, node_manifest

POOL = NodePool("idle-test", 0, "g6.12xlarge", "on-demand", "NVIDIA-L4", 4, "48", "192Gi", 110,
                "us-east-1a")  # fmt: skip
IDLE_AFTER = 3
NS = "idle-test"
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


def _poll(check: Callable[[], object], deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)  # polling an observable condition, with a deadline


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _node(
    kubectl, name: str, annotations: dict[str, str] | None = None, taint: bool = False,
    wait: bool = True,
):  # fmt: skip
    manifest = node_manifest(POOL, name)
    manifest["metadata"]["annotations"].update(annotations or {})
    if taint:
        manifest["spec"]["taints"].append(
            {"key": "gpufinops.dev/idle-shutdown", "value": "true", "effect": "NoSchedule"}
        )
    _ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)))
    if wait:
        _ok(kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s"))


def _deployment(kubectl, name: str, node: str, gpus: int, annotations=None, labels=None):
    pod_labels = {"app": name, **(labels or {})}
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations or {}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                    "containers": [{
                        "name": "main", "image": "registry.invalid/app:1",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {},
                    }],
                },
            },
        },
    }  # fmt: skip
    _ok(kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    _ok(kubectl("wait", "-n", NS, f"deployment/{name}", "--for=jsonpath={.status.readyReplicas}=1",
                "--timeout=60s"))  # fmt: skip


def _exists(kubectl, node: str) -> bool:
    return kubectl("get", "node", node).returncode == 0


def _annotation(kubectl, node: str, key: str) -> str:
    escaped = key.replace(".", "\\.").replace("/", "\\/")
    out = kubectl("get", "node", node, "-o", f"jsonpath={{.metadata.annotations.{escaped}}}")
    return out.stdout if out.returncode == 0 else ""


def _taints(kubectl, node: str) -> list[str]:
    out = _ok(kubectl("get", "node", node, "-o", "jsonpath={.spec.taints[*].key}"))
    return out.split()


@pytest.fixture(scope="module")
def workloads(kubectl) -> Iterator[None]:
    kubectl("create", "namespace", NS)
    for node in ("idle-empty", "idle-pdb", "idle-dnd", "idle-busy"):
        _node(kubectl, node)
    # a CPU pod whose PodDisruptionBudget allows no disruption
    _deployment(kubectl, "guarded", "idle-pdb", 0, labels={"guard": "yes"})
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "guarded", "namespace": NS},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"guard": "yes"}}}}  # fmt: skip
    _ok(kubectl("apply", "-f", "-", input=json.dumps(pdb)))
    _ok(kubectl("wait", "-n", NS, "pdb/guarded", "--for=jsonpath={.status.currentHealthy}=1",
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
    _poll(lambda: not _exists(kubectl, "idle-empty"), 60, "the empty node to be deleted")
    since = max(float(_annotation(kubectl, n, "gpufinops.dev/idle-since") or 0)
                for n in ("idle-pdb", "idle-dnd"))  # fmt: skip
    assert since > 0, "the protected nodes are idle (no GPU pod) and timed"
    # let every protected node's timer expire and several intervals pass
    _poll(lambda: time.time() > since + IDLE_AFTER + 4, 30, "timers to expire")
    assert _exists(kubectl, "idle-pdb"), "a PodDisruptionBudget allowing no disruption protects it"
    assert _exists(kubectl, "idle-dnd"), "gpufinops.dev/do-not-disrupt protects it"
    assert _exists(kubectl, "idle-busy"), "a running GPU pod keeps it busy"
    for node in ("idle-pdb", "idle-dnd", "idle-busy"):
        assert "gpufinops.dev/idle-shutdown" not in _taints(kubectl, node)
    shut = operator.metric("gpufinops_nodes_shut_down_total", pool="idle-test")
    assert shut >= 1, f"metric {shut}; operator log tail:\n{operator.log.read_text()[-4000:]}"
    # no finalizer of ours on nodes: they must stay deletable while the operator is down
    finalizers = kubectl("get", "node", "idle-pdb", "-o", "jsonpath={.metadata.finalizers}")
    assert finalizers.stdout == ""


def test_node_is_shut_down_timer_after_its_last_gpu_pod_left(operator, kubectl) -> None:
    _ok(kubectl("scale", "-n", NS, "deployment/trainer", "--replicas=0"))
    _ok(kubectl("wait", "-n", NS, "pods", "-l", "app=trainer", "--for=delete", "--timeout=60s"))
    gone = time.time()
    _poll(lambda: not _exists(kubectl, "idle-busy"), 60, "the node to be deleted")
    elapsed = time.time() - gone
    print(f"last GPU pod gone -> node deleted: {elapsed:.1f}s (timer {IDLE_AFTER}s, tick 1s)")
    assert elapsed < IDLE_AFTER + 10


def test_a_crash_mid_drain_resumes_or_untaints(operator, kubectl) -> None:
    # As an operator killed while draining leaves it: tainted, phase recorded.
    phase = {"gpufinops.dev/idle-shutdown-phase": "Draining",
             "gpufinops.dev/drain-started": f"{time.time():.3f}"}  # fmt: skip
    _node(kubectl, "idle-resume", annotations=phase, taint=True, wait=False)
    _poll(lambda: not _exists(kubectl, "idle-resume"), 60, "the drain to finish with a shutdown")
    # Killed after tainting, and a GPU pod had landed meanwhile: un-taint, keep the node.
    _node(kubectl, "idle-abort")
    _deployment(kubectl, "landed", "idle-abort", 1)
    _ok(kubectl("annotate", "node", "idle-abort", "gpufinops.dev/idle-shutdown-phase=Tainted"))
    _ok(kubectl("taint", "node", "idle-abort", "gpufinops.dev/idle-shutdown=true:NoSchedule"))
    _poll(lambda: "gpufinops.dev/idle-shutdown" not in _taints(kubectl, "idle-abort"), 60,
          "the taint to be removed")  # fmt: skip
    assert _exists(kubectl, "idle-abort")
    assert _annotation(kubectl, "idle-abort", "gpufinops.dev/idle-shutdown-phase") == ""
