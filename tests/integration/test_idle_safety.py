"""Idle GPU node shutdown takes away only what is idle, does it once, and leaves the rest alone.

The operator runs as a real process against the real control plane, node duties
only, with the idle-test KWOK pool of ``tests.support.idle_nodes`` (3 s timer,
1 s interval) and a pool of its own, ``capi-test``, shut down through the
Cluster API provider. Each test adds its own ``safety-*`` nodes (labelled with
this module's name) and removes them, so that the pools other modules count are
as they found them. The scenarios:

- Cluster API, exactly once: minimal Machine and MachineDeployment CRDs, and no
  Cluster API controller, so the node of a Machine marked for deletion is never
  deleted and stays with the operator. Its MachineDeployment is lowered by one
  and then never again, not even by an operator started after a SIGKILL; a
  MachineDeployment at its autoscaler min size is not lowered, and its node is
  not even tainted.
- A GPU pod bound to the node just as it is tainted keeps it: a validating
  admission webhook served by the test creates the pod while the API server
  admits the taint, before the operator hears back, so the operator cannot have
  seen the pod before tainting. The shutdown must be aborted, not finished.
- GPUs that are not ``nvidia.com/gpu`` are GPUs: MIG slices, time-sliced shares,
  AMD GPUs and a DRA resource claim each keep their node untainted.
- Another controller's taint is not the operator's to rewrite: one added while
  the node drains keeps its value and timeAdded when the operator takes its own
  taint off, and one added between the operator's read and its write of the
  taints (in-process, against the real API server) is not lost.
- A static pod's mirror blocks nothing (the kubelet owns it, not the drain).
- A truly empty node is still shut down within its timer and one interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.config import new_client_from_config
from tests.support.idle_nodes import (
    CONFIG,
    IDLE_AFTER,
    TAINT,
    add_node,
    node_annotation,
    node_exists,
    node_taints,
)
from tests.support.idle_safety import (
    NodeTaintWebhook,
    capi_crds_installed,
    capi_object,
    node_taint_webhook,
    observe,
    serving_cert,
    transitions,
)
from tests.support.kube import KubectlRun, deployment_manifest, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import describe_on_timeout, poll, poll_until

from gpufinops.adapters.nodes import NodeActions, RemovalRefused

NS = "idle-safety"
MODULE = {"gpufinops.dev/test-module": "idle-safety"}
"""On every node this module adds, so that its cleanup finds them all."""
INTERVAL = 1.0
"""The idle check interval of both pools, in seconds."""
PHASE = "gpufinops.dev/idle-shutdown-phase"
IMAGE = "registry.invalid/app:1"
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists"}

CAPI_POOL = "capi-test"
MACHINE = "cluster.x-k8s.io/machine"
DELETE_MACHINE = "cluster.x-k8s.io/delete-machine"
MIN_SIZE = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def namespace(kubectl: KubectlRun) -> Iterator[str]:
    # A previous run's namespace may still be terminating.
    kubectl("wait", "--for=delete", f"namespace/{NS}", "--timeout=120s")
    ok(kubectl("create", "namespace", NS))
    # Pods are admitted only once the namespace's default ServiceAccount exists.
    ok(kubectl("wait", "--for=create", "serviceaccount/default", "-n", NS, "--timeout=60s"))
    try:
        yield NS
    finally:
        kubectl("delete", "deployments,resourceclaims", "--all", "-n", NS, "--wait=true",
                "--timeout=60s")  # fmt: skip
        kubectl("delete", "nodes", "-l", _selector(MODULE), "--wait=true", "--timeout=60s")
        # Pods left on nodes that are gone have no kubelet (kwok) to finish them.
        kubectl("delete", "pods", "--all", "-n", NS, "--force", "--grace-period=0")
        kubectl("delete", "pods", "-n", "kube-system", "-l", _selector(MODULE), "--force",
                "--grace-period=0")  # fmt: skip
        kubectl("delete", "namespace", NS, "--wait=false")


@pytest.fixture(scope="module")
def capi(kubectl: KubectlRun, namespace: str) -> Iterator[None]:
    """Machine and MachineDeployment CRDs; no Cluster API controller behind them."""
    with capi_crds_installed(kubectl):
        yield


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _operator(
    kubeconfig: Path, log_dir: Path, drain_timeout: float | None = None
) -> AbstractContextManager[RunningOperator]:
    """A node-duty operator (``--selector`` matches no AIWorkload) for the idle-test
    pool and the Cluster API pool, its log in ``log_dir``."""
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    idle_test = config["nodePools"][-1]
    assert idle_test["selector"] == {"gpufinops.dev/pool": "idle-test"}
    assert idle_test["idleShutdown"]["intervalSeconds"] == INTERVAL
    if drain_timeout is not None:
        idle_test["idleShutdown"]["drainTimeoutSeconds"] = drain_timeout
    config["nodePools"].append({
        "name": CAPI_POOL,
        "selector": {"gpufinops.dev/pool": CAPI_POOL},
        "instanceType": "g6.12xlarge",
        "capacityType": "on-demand",
        "idleShutdown": {
            "enabled": True, "idleAfterSeconds": IDLE_AFTER, "intervalSeconds": INTERVAL,
            "maxNodesPerInterval": 10, "dryRun": False, "provider": "cluster-api",
        },
    })  # fmt: skip
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return running_operator(kubeconfig, log_dir, "--config", str(path),
                            "--selector", "gpufinops.dev/shard=node-duties-only")  # fmt: skip


def _node(kubectl: KubectlRun, name: str, **kwargs: Any) -> None:
    """A node of the idle-test pool (unless ``labels`` say otherwise) labelled as this module's."""
    add_node(kubectl, name, **{**kwargs, "labels": {**MODULE, **(kwargs.get("labels") or {})}})


def _delete_nodes(kubectl: KubectlRun, *names: str) -> None:
    kubectl("delete", "nodes", *names, "--ignore-not-found", "--wait=true", "--timeout=60s")


def _node_json(kubectl: KubectlRun, name: str) -> dict[str, Any] | None:
    got = kubectl("get", "node", name, "-o", "json")
    return json.loads(got.stdout) if got.returncode == 0 else None


def _module_nodes(kubectl: KubectlRun) -> dict[str, list[str]]:
    """This module's nodes, each with the keys of its taints."""
    listed = json.loads(ok(kubectl("get", "nodes", "-l", _selector(MODULE), "-o", "json")))
    return {
        n["metadata"]["name"]: [t["key"] for t in n["spec"].get("taints") or []]
        for n in listed["items"]
    }


def _taint(node: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((t for t in node["spec"].get("taints") or [] if t["key"] == key), None)


def _deployment(
    kubectl: KubectlRun,
    name: str,
    node: str,
    resources: dict[str, Any] | None = None,
    *,
    bind: bool = False,
    tolerate_all: bool = False,
    pod_spec: dict[str, Any] | None = None,
) -> None:
    """A one-pod Deployment on ``node``, its container with ``resources``, Ready.

    The pod is placed by the scheduler (``nodeSelector``), or with ``bind`` bound to
    the node by the Deployment itself (``nodeName``: what no scheduler would place).
    """
    spec: dict[str, Any] = {
        "tolerations": [{"operator": "Exists"}] if tolerate_all else [KWOK_TOLERATION],
        "containers": [{"name": "main", "image": IMAGE, "resources": resources or {}}],
        **(pod_spec or {}),
    }
    if bind:
        spec["nodeName"] = node
    else:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    ok(kubectl("apply", "-f", "-", input=json.dumps(deployment_manifest(name, NS, spec))))
    ok(kubectl("wait", "-n", NS, f"deployment/{name}", "--for=jsonpath={.status.readyReplicas}=1",
               "--timeout=60s"))  # fmt: skip


def _api_client(kubeconfig: Path) -> client.ApiClient:
    """A Kubernetes client of the test's own, in-process."""
    config_file = str(kubeconfig)
    api: client.ApiClient = new_client_from_config(config_file=config_file)  # type: ignore[no-untyped-call]
    return api


def _idle_state(kubectl: KubectlRun, node: str) -> str:
    """What the operator recorded on ``node``: its idle start, shutdown phase and taints."""
    since = node_annotation(kubectl, node, "gpufinops.dev/idle-since") or "-"
    phase = node_annotation(kubectl, node, PHASE) or "-"
    taints = node_taints(kubectl, node)
    return f"{node}: idle since {since}, shutdown phase {phase}, taints {taints}"


def _arrows(values: list[Any]) -> str:
    return " -> ".join(str(v) for v in transitions(values))


# ---------------------------------------------------------------------- Cluster API


def _machine(
    kubectl: KubectlRun, machine: str, deployment: str, replicas: int,
    deployment_annotations: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """A MachineDeployment of ``replicas`` and one of its Machines."""
    md = capi_object("MachineDeployment", deployment, NS,
                     annotations=deployment_annotations or {})  # fmt: skip
    md["spec"] = {"clusterName": "safety", "replicas": replicas}
    owned = capi_object("Machine", machine, NS,
                        labels={"cluster.x-k8s.io/deployment-name": deployment})  # fmt: skip
    owned["spec"] = {"clusterName": "safety"}
    for obj in (md, owned):
        ok(kubectl("apply", "-f", "-", input=json.dumps(obj)))


def _capi_node(kubectl: KubectlRun, name: str, machine: str) -> None:
    _node(kubectl, name, labels={"gpufinops.dev/pool": CAPI_POOL},
          annotations={MACHINE: machine, "cluster.x-k8s.io/cluster-namespace": NS})  # fmt: skip


def _replicas(kubectl: KubectlRun, deployment: str) -> int:
    got = ok(kubectl("get", "machinedeployments.cluster.x-k8s.io", deployment, "-n", NS,
                     "-o", "jsonpath={.spec.replicas}"))  # fmt: skip
    return int(got)


def _marked(kubectl: KubectlRun, machine: str) -> bool:
    got = ok(kubectl("get", "machines.cluster.x-k8s.io", machine, "-n", NS, "-o", "json"))
    return DELETE_MACHINE in (json.loads(got)["metadata"].get("annotations") or {})


def test_cluster_api_lowers_the_machine_deployment_exactly_once(
    capi: None, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    node, machine, md = "safety-capi-a", "machine-a", "md-a"
    _machine(kubectl, machine, md, replicas=6)
    _capi_node(kubectl, node, machine)
    try:
        seen = [_replicas(kubectl, md)]
        with _operator(kubeconfig, tmp_path / "first") as first:
            poll(lambda: _marked(kubectl, machine), f"Machine {machine} to get {DELETE_MACHINE}")
            # Nothing deletes the node (no Cluster API controller): it stays with the operator.
            seen += observe(lambda: _replicas(kubectl, md), 20 * INTERVAL, f"{md}'s replicas")
            assert transitions(seen) == [6, 5], (
                f"MachineDeployment {md}'s replicas, from before the shutdown to 20 intervals "
                f"after it: {_arrows(seen)} (one node shut down: 6 -> 5)"
            )
            assert node_exists(kubectl, node)
            first.kill()
        with _operator(kubeconfig, tmp_path / "second"):
            seen = observe(lambda: _replicas(kubectl, md), 20 * INTERVAL, f"{md}'s replicas")
        assert transitions(seen) == [5], (
            f"MachineDeployment {md}'s replicas over 20 intervals of an operator started after "
            f"a SIGKILL: {_arrows(seen)} (the node's shutdown was already done: 5)"
        )
    finally:
        _delete_nodes(kubectl, node)


def test_cluster_api_node_group_at_its_min_size_is_not_touched(
    capi: None, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    # md-c has no min size: its idle node's shutdown shows when the timers ran out.
    _machine(kubectl, "machine-b", "md-b", replicas=2, deployment_annotations={MIN_SIZE: "2"})
    _machine(kubectl, "machine-c", "md-c", replicas=3)
    node, control = "safety-capi-b", "safety-capi-c"
    _capi_node(kubectl, node, "machine-b")
    _capi_node(kubectl, control, "machine-c")

    def look() -> tuple[int, bool]:
        return _replicas(kubectl, "md-b"), TAINT in (_module_nodes(kubectl).get(node) or [])

    try:
        seen: list[tuple[int, bool]] = []
        with _operator(kubeconfig, tmp_path):

            def control_shut_down() -> bool:
                seen.append(look())
                return _replicas(kubectl, "md-c") < 3

            poll(control_shut_down, "the idle node of md-c (no min size) to be shut down")
            seen += observe(look, IDLE_AFTER + 10 * INTERVAL, "md-b and its node")
    finally:
        _delete_nodes(kubectl, node, control)
    replicas = [r for r, _ in seen]
    assert transitions(replicas) == [2], (
        f"MachineDeployment md-b's replicas: {_arrows(replicas)} "
        f"(its node group's min size is 2; it must stay at 2)"
    )
    assert not any(t for _, t in seen), f"{node} was tainted although md-b is at its min size"
    assert not _marked(kubectl, "machine-b"), f"machine-b got {DELETE_MACHINE}"


def _capi_node_body(kubectl: KubectlRun, name: str) -> dict[str, Any]:
    found = _node_json(kubectl, name)
    assert found is not None
    return found


def test_cluster_api_provider_called_twice_lowers_once_and_a_refusal_unmarks(
    capi: None, kubectl: KubectlRun, kubeconfig: Path
) -> None:
    """NodeActions in-process, no operator: the provider's own record on the
    MachineDeployment (not the node's annotation) makes a second call lower
    nothing; a refusal after the Machine was marked takes the mark off again."""
    from gpufinops.config.model import IdleShutdownDefaults

    settings = IdleShutdownDefaults.model_validate({"enabled": True, "provider": "cluster-api"})
    _machine(kubectl, "machine-d", "md-d", replicas=4,
             deployment_annotations={"example.com/other": "kept"})  # fmt: skip
    _capi_node(kubectl, "safety-capi-d", "machine-d")
    _machine(kubectl, "machine-e", "md-e", replicas=3)
    _capi_node(kubectl, "safety-capi-e", "machine-e")
    api = _api_client(kubeconfig)
    actions = NodeActions(api)
    try:
        body = _capi_node_body(kubectl, "safety-capi-d")
        assert actions.removal_blocker(body, settings) is None
        first = actions.shut_down(body, settings)
        again = actions.shut_down(body, settings)
        assert (_replicas(kubectl, "md-d"), _marked(kubectl, "machine-d")) == (3, True), first
        assert again is not None and "already lowered" in again, again
        assert actions.removal_done(body, settings)
        # md-e reaches its minimum between the check before the taint and the removal:
        # the mark shut_down puts on the Machine must not stay behind it.
        other = _capi_node_body(kubectl, "safety-capi-e")
        assert actions.removal_blocker(other, settings) is None
        pin = {"metadata": {"annotations": {MIN_SIZE: "3"}}}
        ok(kubectl("patch", "machinedeployments.cluster.x-k8s.io", "md-e", "-n", NS,
                   "--type=merge", "-p", json.dumps(pin)))  # fmt: skip
        with pytest.raises(RemovalRefused, match="minimum size"):
            actions.shut_down(other, settings)
        assert (_replicas(kubectl, "md-e"), _marked(kubectl, "machine-e")) == (3, False)
        assert "minimum size" in (actions.removal_blocker(other, settings) or "")
        assert not actions.removal_done(other, settings)
    finally:
        api.close()  # type: ignore[no-untyped-call]
        _delete_nodes(kubectl, "safety-capi-d", "safety-capi-e")


# ---------------------------------------------------------------------- a pod lands with the taint

LATE_POD = "late-gpu"
WEBHOOK_NODE_LABEL = {"gpufinops.dev/safety-webhook": "bind-gpu-pod-on-taint"}


def _late_gpu_pod(node: str) -> dict[str, Any]:
    """A GPU pod bound to ``node`` directly, as a scheduler's binding leaves it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": LATE_POD, "namespace": NS},
        "spec": {
            "nodeName": node,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "main", "image": IMAGE,
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
    }  # fmt: skip


def _pod_phase(kubectl: KubectlRun, namespace: str, name: str) -> str:
    got = kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    if got.returncode != 0:
        return "gone"
    pod = json.loads(got.stdout)
    deleting = " (being deleted)" if pod["metadata"].get("deletionTimestamp") else ""
    return str(pod.get("status", {}).get("phase", "")) + deleting


def test_a_gpu_pod_bound_as_the_node_is_tainted_keeps_the_node(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    node = "safety-webhook"
    _node(kubectl, node, labels=WEBHOOK_NODE_LABEL)
    api = _api_client(kubeconfig)
    core = client.CoreV1Api(api)

    def bind_gpu_pod(tainted: str) -> None:
        pod: Any = _late_gpu_pod(tainted)  # the client takes plain dicts as bodies
        core.create_namespaced_pod(NS, pod)

    webhook = NodeTaintWebhook(TAINT, bind_gpu_pod)
    registered = node_taint_webhook(kubectl, serving_cert(tmp_path / "webhook"),
                                    "idle-safety-late-gpu-pod", WEBHOOK_NODE_LABEL, webhook,
                                    probe_node=node)  # fmt: skip
    try:
        with registered, _operator(kubeconfig, tmp_path / "operator"):
            poll(lambda: webhook.tainted, f"the operator to taint the idle node {node}")
            assert webhook.errors == [], f"the webhook could not create the pod: {webhook.errors}"

            def untainted() -> bool:
                assert node_exists(kubectl, node), (
                    f"node {node} was shut down although GPU pod {NS}/{LATE_POD} was bound to "
                    f"it as it was tainted (pod now: {_pod_phase(kubectl, NS, LATE_POD)})"
                )
                return TAINT not in node_taints(kubectl, node)

            poll(untainted, "the operator to abort the shutdown and take its taint off")
            aborted = time.time()
            poll(lambda: time.time() > aborted + 3 * INTERVAL, "three more intervals")
            assert node_exists(kubectl, node), f"{node} was shut down after the abort"
            assert TAINT not in node_taints(kubectl, node)
            assert node_annotation(kubectl, node, PHASE) == ""
            assert _pod_phase(kubectl, NS, LATE_POD) == "Running"
    finally:
        kubectl("delete", "pod", LATE_POD, "-n", NS, "--force", "--grace-period=0",
                "--ignore-not-found")  # fmt: skip
        _delete_nodes(kubectl, node)
        api.close()


# ---------------------------------------------------------------------- GPUs by other names

DRA_CLAIM = "safety-dra-gpu"
NO_NVIDIA_GPU: dict[str, str | None] = {"nvidia.com/gpu": None}
NO_NVIDIA_LABELS: dict[str, str | None] = {"nvidia.com/gpu.product": None,
                                           "nvidia.com/gpu.count": None}  # fmt: skip
OTHER_GPUS: dict[str, tuple[dict[str, str | None], dict[str, str | None], dict[str, str]]] = {
    # node: (its capacity, its labels, what its pod asks for)
    "safety-mig": ({"nvidia.com/gpu": "7", "nvidia.com/mig-1g.5gb": "7"},
                   {"nvidia.com/mig.strategy": "mixed"}, {"nvidia.com/mig-1g.5gb": "1"}),
    "safety-shared": ({**NO_NVIDIA_GPU, "nvidia.com/gpu.shared": "16"},
                      {"nvidia.com/gpu.replicas": "4"}, {"nvidia.com/gpu.shared": "1"}),
    "safety-amd": ({**NO_NVIDIA_GPU, "amd.com/gpu": "8"}, NO_NVIDIA_LABELS, {"amd.com/gpu": "1"}),
}  # fmt: skip


def _dra_api_version(kubectl: KubectlRun) -> str:
    """The resource.k8s.io version the API server prefers (ResourceClaims moved to v1 in 1.34)."""
    group = json.loads(ok(kubectl("get", "--raw", "/apis/resource.k8s.io")))
    return str(group["preferredVersion"]["groupVersion"])


def _dra_claim(kubectl: KubectlRun) -> None:
    version = _dra_api_version(kubectl)
    request: dict[str, Any] = {"name": "gpu"}
    device = {"deviceClassName": "gpu.example.com"}
    # v1 and v1beta2 nest the request's device selection under "exactly".
    request.update({"exactly": device} if version.endswith(("/v1", "/v1beta2")) else device)
    claim = {"apiVersion": version, "kind": "ResourceClaim",
             "metadata": {"name": DRA_CLAIM, "namespace": NS},
             "spec": {"devices": {"requests": [request]}}}  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=json.dumps(claim)))


def test_nodes_busy_with_other_gpu_resources_are_kept_untainted(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    busy = [*OTHER_GPUS, "safety-dra"]
    control = "safety-control"
    try:
        for node, (capacity, labels, asks) in OTHER_GPUS.items():
            _node(kubectl, node, labels=labels, resources=capacity)
            _deployment(kubectl, node, node, {"limits": asks})
        # A DRA claim and no extended resource; no DRA driver allocates the claim, so no
        # scheduler would place the pod: the Deployment binds it to the node itself.
        _node(kubectl, "safety-dra", labels=NO_NVIDIA_LABELS, resources=NO_NVIDIA_GPU)
        _dra_claim(kubectl)
        _deployment(kubectl, "safety-dra", "safety-dra", {"claims": [{"name": "gpu"}]}, bind=True,
                    pod_spec={"resourceClaims": [{"name": "gpu",
                                                  "resourceClaimName": DRA_CLAIM}]})  # fmt: skip
        _node(kubectl, control)  # empty: its shutdown shows the timers ran out
        seen: list[dict[str, list[str]]] = []
        with _operator(kubeconfig, tmp_path):

            def control_shut_down() -> bool:
                seen.append(_module_nodes(kubectl))
                return control not in seen[-1]

            poll(control_shut_down, f"the empty node {control} to be shut down")
            seen += observe(lambda: _module_nodes(kubectl), 2 * IDLE_AFTER + 3 * INTERVAL,
                            "the busy nodes")  # fmt: skip
        touched = {
            node: sorted({"tainted" for s in seen if TAINT in s.get(node, [])}
                         | {"shut down" for s in seen if node not in s})
            for node in busy
        }  # fmt: skip
        assert touched == {node: [] for node in busy}, (
            f"nodes whose pods hold GPUs other than nvidia.com/gpu: {touched}"
        )
    finally:
        kubectl("delete", "deployments", *busy, "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "resourceclaim", DRA_CLAIM, "-n", NS, "--ignore-not-found")
        _delete_nodes(kubectl, *busy, control)


# ---------------------------------------------------------------------- other controllers' taints

DRAIN_TIMEOUT = 5.0
OTHER_TAINT = {"key": "example.com/maintenance", "value": "planned", "effect": "NoExecute",
               "timeAdded": "2024-05-06T07:08:09Z"}  # fmt: skip


def test_another_taint_added_mid_drain_survives_the_abort_with_its_time_added(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    node = "safety-drain"
    _node(kubectl, node)
    # A CPU pod pinned to the node that tolerates every taint: evicted, it comes back,
    # which holds the node in Draining until the drain times out.
    _deployment(kubectl, node, node, tolerate_all=True)
    try:
        with _operator(kubeconfig, tmp_path, drain_timeout=DRAIN_TIMEOUT):
            poll(lambda: node_annotation(kubectl, node, PHASE) == "Draining", "the drain to start")
            add = [{"op": "add", "path": "/spec/taints/-", "value": OTHER_TAINT}]
            patched = json.loads(ok(kubectl("patch", "node", node, "--type=json",
                                             "-p", json.dumps(add), "-o", "json")))  # fmt: skip
            assert _taint(patched, TAINT), "the other taint was added while the node drained"
            stored = _taint(patched, OTHER_TAINT["key"])
            assert stored == OTHER_TAINT, f"the API server stored {stored}"

            def untainted() -> dict[str, Any] | None:
                body = _node_json(kubectl, node)
                assert body is not None, f"{node} was shut down; its drain never finished"
                return None if _taint(body, TAINT) else body

            after = poll(untainted, "the drain to time out and the operator to untaint the node",
                         deadline=DRAIN_TIMEOUT + 60)  # fmt: skip
        kept = _taint(after, OTHER_TAINT["key"]) if after else None
        assert kept == OTHER_TAINT, (
            f"taint {OTHER_TAINT['key']} after the operator took its own off: {kept} "
            f"(added as {OTHER_TAINT})"
        )
    finally:
        kubectl("delete", "deployment", node, "-n", NS, "--wait=true", "--timeout=60s")
        _delete_nodes(kubectl, node)


def test_set_taint_keeps_a_taint_added_between_its_read_and_its_write(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path
) -> None:
    """NodeActions in-process against the API server: another client taints the node
    right after the operator's read of it, before its write."""
    node, other = "safety-race", {"key": "example.com/other", "value": "x", "effect": "NoSchedule"}
    _node(kubectl, node)  # no operator runs here
    ours, theirs = _api_client(kubeconfig), _api_client(kubeconfig)
    actions = NodeActions(ours)
    read_node: Callable[..., Any] = actions.core.read_node
    raced: list[str] = []

    def read_then_race(name: str, *args: Any, **kwargs: Any) -> Any:
        got = read_node(name, *args, **kwargs)
        if not raced:  # once: a retry after a conflict must find the taint in place
            add = [{"op": "add", "path": "/spec/taints/-", "value": other}]
            client.CoreV1Api(theirs).patch_node(name, add)
            raced.append(name)
        return got

    actions.core.read_node = read_then_race  # type: ignore[method-assign]
    try:
        actions.set_taint(node, True)
        assert raced == [node], "set_taint read the node through NodeActions.core.read_node"
        keys = node_taints(kubectl, node)
        assert TAINT in keys and other["key"] in keys, (
            f"taints after set_taint: {keys}; {other['key']} was added between its read and "
            f"its write"
        )
    finally:
        ours.close()
        theirs.close()
        _delete_nodes(kubectl, node)


# ---------------------------------------------------------------------- mirror pods

MIRROR_POD = "safety-mirror-static"


def test_a_mirror_pod_does_not_keep_an_idle_node(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    node = "safety-mirror"
    _node(kubectl, node)
    uid = ok(kubectl("get", "node", node, "-o", "jsonpath={.metadata.uid}"))
    # What a kubelet posts for a static pod: the mirror annotation, owned by the Node.
    mirror = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": MIRROR_POD,
            "namespace": "kube-system",
            "labels": MODULE,
            "annotations": {"kubernetes.io/config.mirror": "5c1b7ad1e2f3a4b5c6d7e8f9a0b1c2d3",
                            "kubernetes.io/config.source": "file"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid,
                                 "controller": True}],
        },
        "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "main", "image": IMAGE}]},
    }  # fmt: skip
    try:
        ok(kubectl("apply", "-f", "-", input=json.dumps(mirror)))
        poll_until(lambda: _pod_phase(kubectl, "kube-system", MIRROR_POD),
                   lambda phase: phase == "Running", "the mirror pod to run")  # fmt: skip
        recorded = describe_on_timeout(lambda: _idle_state(kubectl, node))
        with _operator(kubeconfig, tmp_path), recorded:
            started = time.time()
            poll(lambda: not node_exists(kubectl, node),
                 f"{node}, idle but for a mirror pod, to be shut down",
                 deadline=IDLE_AFTER + 8 * INTERVAL)  # fmt: skip
            print(f"operator up -> node with a mirror pod shut down: {time.time() - started:.1f}s")
    finally:
        kubectl("delete", "pod", MIRROR_POD, "-n", "kube-system", "--force", "--grace-period=0",
                "--ignore-not-found")  # fmt: skip
        _delete_nodes(kubectl, node)


# ---------------------------------------------------------------------- the plain case stays fast

ALLOWANCE = 2.0
"""Seconds for the API round trips: watch, annotate, taint, drain, delete (printed
with the figure, not asserted)."""


def test_an_empty_node_is_still_shut_down_after_its_timer(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    node = "safety-empty"
    try:
        with _operator(kubeconfig, tmp_path):
            created = time.time()
            _node(kubectl, node, wait=False)
            poll(lambda: not node_exists(kubectl, node), f"the empty node {node} to be shut down")
            elapsed = time.time() - created
        # How soon is a figure, printed (a wall-clock bound fails on a loaded machine);
        # never before its timer is the rule.
        expected = IDLE_AFTER + INTERVAL + ALLOWANCE
        print(f"empty node created -> deleted: {elapsed:.1f}s (timer {IDLE_AFTER}s, "
              f"tick {INTERVAL:g}s, expected within {expected:g}s)")  # fmt: skip
        assert elapsed >= IDLE_AFTER
    finally:
        _delete_nodes(kubectl, node)


def test_the_kubernetes_provider_never_deletes_a_node_whose_machine_would_keep_billing(
    namespace: str, kubectl: KubectlRun, kubeconfig: Path, tmp_path: Path
) -> None:
    # Not a KWOK node and no Karpenter termination finalizer: deleting the Node object
    # would leave its machine running. The empty KWOK node shows when timers ran out.
    node, control = "safety-vm", "safety-vm-control"
    try:
        with _operator(kubeconfig, tmp_path):
            _node(kubectl, node, annotations={"kwok.x-k8s.io/node": None}, wait=False)
            uid = ok(kubectl("get", "node", node, "-o", "jsonpath={.metadata.uid}"))
            _node(kubectl, control, wait=False)
            poll(lambda: not node_exists(kubectl, control), f"the KWOK node {control} to go")
            seen = observe(lambda: _module_nodes(kubectl).get(node), 10 * INTERVAL, node)
            # by uid: Events of an earlier node of that name may still be listed
            events = ok(kubectl("get", "events", "-A", "-o", "json", "--field-selector",
                                f"involvedObject.kind=Node,involvedObject.uid={uid}"))  # fmt: skip
            reasons = [e["reason"] for e in json.loads(events)["items"]]
    finally:
        _delete_nodes(kubectl, node, control)
    assert all(taints is not None and TAINT not in taints for taints in seen), (
        f"{node}'s taints over 10 intervals: {_arrows(seen)} (never tainted, never deleted)"
    )
    assert reasons.count("ShutdownRefused") == 1, (
        f"Events of {node}: {reasons} (the refusal once, not once per interval)"
    )
