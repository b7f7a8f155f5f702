"""The operator killed (SIGKILL) at each step of an idle node's shutdown.

Each step is recorded on the node before it is taken (``Tainted``, ``Draining``,
``ShuttingDown``), so a restarted operator either finishes the shutdown exactly
once or, when that is no longer safe or the drain cannot finish, rolls it back:
no node stays cordoned for ever. The drain is killed for real: a Deployment
whose pod tolerates the idle taint and is pinned to the node comes back after
every eviction, which holds the node in ``Draining`` for as long as the test
wants. The other steps are set up as a killed operator leaves them.

The operators here are node-duty instances: ``--selector`` matches no AIWorkload.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.idle_nodes import (
    CONFIG,
    TAINT,
    add_node,
    node_annotation,
    node_exists,
    node_taints,
)
from tests.support.kube import deployment_manifest, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll

NS = "drain-crash"
PHASE = "gpufinops.dev/idle-shutdown-phase"
NODES = ("crash-drain-done", "crash-drain-stuck", "crash-shutting", "crash-untainted")


def _config(tmp: Path, drain_timeout: float) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["nodePools"][-1]["idleShutdown"]["drainTimeoutSeconds"] = drain_timeout
    path = tmp / f"config-{drain_timeout:g}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _operator(kubeconfig: Path, tmp: Path, drain_timeout: float = 600) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    config = _config(tmp, drain_timeout)
    return running_operator(kubeconfig, tmp, "--config", str(config),
                            "--selector", "gpufinops.dev/shard=node-duties-only")  # fmt: skip


UIDS: dict[str, str] = {}


def _new_node(kubectl: Any, node: str, **kwargs: Any) -> None:
    """A fresh node; its Events are told from those of earlier nodes of that name by uid."""
    add_node(kubectl, node, **kwargs)
    UIDS[node] = ok(kubectl("get", "node", node, "-o", "jsonpath={.metadata.uid}"))


def _node_events(kubectl: Any, node: str) -> list[str]:
    selector = f"involvedObject.kind=Node,involvedObject.uid={UIDS[node]}"
    got = kubectl("get", "events", "-A", "--field-selector", selector, "-o", "json")
    return [e["reason"] for e in json.loads(got.stdout)["items"]] if got.returncode == 0 else []


def _returning_pod(kubectl: Any, node: str) -> None:
    """A CPU pod pinned to ``node`` that tolerates the idle taint: evicted, it comes back."""
    pod_spec = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"operator": "Exists"}],
        "containers": [{"name": "main", "image": "registry.invalid/app:1"}],
    }
    manifest = deployment_manifest(node, NS, pod_spec)
    ok(kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    ok(kubectl("wait", "-n", NS, f"deployment/{node}", "--for=jsonpath={.status.readyReplicas}=1",
               "--timeout=60s"))  # fmt: skip


@pytest.fixture(scope="module")
def cleanup(kubectl: Any) -> Iterator[None]:
    # A previous run's namespace may still be terminating.
    kubectl("wait", "--for=delete", f"namespace/{NS}", "--timeout=120s")
    kubectl("create", "namespace", NS)
    yield
    kubectl("delete", "deployments", *NODES, "-n", NS, "--wait=true", "--timeout=60s")
    kubectl("delete", "nodes", *NODES, "--wait=true", "--timeout=60s")
    kubectl("delete", "namespace", NS, "--wait=false")  # its pods' nodes are gone: slow


def _killed_mid_drain(kubectl: Any, kubeconfig: Path, tmp: Path, node: str) -> RunningOperator:
    """Start an operator, let it tain and start draining ``node``, SIGKILL it there."""
    _new_node(kubectl, node)
    _returning_pod(kubectl, node)
    with _operator(kubeconfig, tmp / "first") as first:
        poll(lambda: node_annotation(kubectl, node, PHASE) == "Draining", "draining")
        poll(lambda: "Draining" in _node_events(kubectl, node), "the Draining Event")
        first.kill()
    assert TAINT in node_taints(kubectl, node), "killed mid-drain: still tainted"
    return first


def test_killed_mid_drain_the_next_operator_finishes_the_shutdown_once(
    cleanup: None, kubectl: Any, kubeconfig: Path, tmp_path: Path
) -> None:
    node = "crash-drain-done"
    _killed_mid_drain(kubectl, kubeconfig, tmp_path, node)
    # Meanwhile the pod's owner goes away; the restarted operator finds the node drained.
    ok(kubectl("delete", "deployment", node, "-n", NS, "--wait=true", "--timeout=60s"))
    with _operator(kubeconfig, tmp_path / "second") as second:
        poll(lambda: not node_exists(kubectl, node), "the node to be shut down")
        poll(lambda: second.metric("gpufinops_nodes_shut_down_total", pool="idle-test") == 1,
             "the shutdown to be counted")  # fmt: skip
        reasons = _node_events(kubectl, node)
        assert reasons.count("Draining") == 1, reasons  # not drained twice
        poll(lambda: _node_events(kubectl, node).count("ShutDown") == 1, "ShutDown")
        assert "ShutdownAborted" not in _node_events(kubectl, node)


def test_killed_mid_drain_that_cannot_finish_the_node_is_untainted_after_the_timeout(
    cleanup: None, kubectl: Any, kubeconfig: Path, tmp_path: Path
) -> None:
    node = "crash-drain-stuck"
    _killed_mid_drain(kubectl, kubeconfig, tmp_path, node)
    started = float(node_annotation(kubectl, node, "gpufinops.dev/drain-started"))
    # The restarted operator has a short drain timeout; the pod keeps coming back.
    with _operator(kubeconfig, tmp_path / "second", drain_timeout=4):
        poll(lambda: TAINT not in node_taints(kubectl, node), "the taint to be removed")
        assert time.time() > started + 4, "rolled back only once the drain timed out"
        assert node_exists(kubectl, node)
        assert node_annotation(kubectl, node, PHASE) == ""
        assert node_annotation(kubectl, node, "gpufinops.dev/drain-started") == ""
        poll(lambda: "ShutdownAborted" in _node_events(kubectl, node), "the Event")
        assert "ShutDown" not in _node_events(kubectl, node)
    # Gone before the next test's operator could find it idle and shut it down.
    ok(kubectl("delete", "node", node, "--wait=true", "--timeout=60s"))
    ok(kubectl("delete", "deployment", node, "-n", NS, "--wait=true", "--timeout=60s"))


def test_killed_after_recording_a_step_but_before_taking_it(
    cleanup: None, kubectl: Any, kubeconfig: Path, tmp_path: Path
) -> None:
    # Killed between recording ShuttingDown and deleting the node: past the point of
    # no return, the next operator deletes it. Killed between recording Tainted and
    # tainting: the next one taints it before draining (else the evicted pods'
    # replacements could land right back on it) and carries on.
    shutting = {PHASE: "ShuttingDown"}
    _new_node(kubectl, "crash-shutting", annotations=shutting, taint=True, wait=False)
    _new_node(kubectl, "crash-untainted", annotations={PHASE: "Tainted"})
    _returning_pod(kubectl, "crash-untainted")
    with _operator(kubeconfig, tmp_path) as op:
        poll(lambda: not node_exists(kubectl, "crash-shutting"), "crash-shutting deleted")
        poll(lambda: node_annotation(kubectl, "crash-untainted", PHASE) == "Draining",
             "the drain to resume")  # fmt: skip
        poll(lambda: TAINT in node_taints(kubectl, "crash-untainted"),
             "the taint the killed operator never set")  # fmt: skip
        ok(kubectl("delete", "deployment", "crash-untainted", "-n", NS, "--wait=true",
                   "--timeout=60s"))  # fmt: skip
        poll(lambda: not node_exists(kubectl, "crash-untainted"), "crash-untainted deleted")
        poll(lambda: op.metric("gpufinops_nodes_shut_down_total", pool="idle-test") == 2,
             "both shutdowns to be counted")  # fmt: skip
        shutting = _node_events(kubectl, "crash-shutting")
        assert shutting.count("ShutDown") == 1 and "Draining" not in shutting, shutting
        poll(lambda: _node_events(kubectl, "crash-untainted").count("ShutDown") == 1,
             "the ShutDown Event")  # fmt: skip
        assert _node_events(kubectl, "crash-untainted").count("Draining") == 1
