"""`gpufinops run` against the real API server: status, conditions and Events."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.operator import RunningOperator, running_operator

NS = "operator-test"


@pytest.fixture(scope="module")
def operator(kubeconfig: Path, kubectl, tmp_path_factory) -> Iterator[RunningOperator]:
    kubectl("create", "namespace", NS)
    with running_operator(kubeconfig, tmp_path_factory.mktemp("operator"), "--namespace", NS) as op:
        yield op


def _apply(kubectl, manifest: str) -> None:
    result = kubectl("apply", "-n", NS, "-f", "-", input=manifest)
    assert result.returncode == 0, result.stderr


def _wait_for(kubectl, name: str, jsonpath: str, value: str) -> None:
    result = kubectl(
        "wait",
        "-n",
        NS,
        f"aiw/{name}",
        f"--for=jsonpath={{{jsonpath}}}={value}",
        "--timeout=60s",
    )
    assert result.returncode == 0, result.stderr


def _get(kubectl, name: str) -> dict:
    result = kubectl("get", "aiw", name, "-n", NS, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _events(kubectl, name: str) -> list[dict]:
    result = kubectl(
        "get",
        "events",
        "-n",
        NS,
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=AIWorkload",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["items"]


VALID = """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: chat}
spec:
  type: Experiment
  costAllocation: {team: search}
  nodePools: [l4-spot]
  experiment:
    targetRef: {kind: Deployment, name: chat-server}
    maxLifetimeSeconds: %d
"""


def test_valid_workload_becomes_ready_with_an_event(operator, kubectl) -> None:
    _apply(kubectl, VALID % 3600)
    _wait_for(kubectl, "chat", '.status.conditions[?(@.type=="Ready")].status', "True")
    obj = _get(kubectl, "chat")
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["target"] == "Deployment/chat-server"
    types = {c["type"]: c for c in status["conditions"]}
    assert types["InvalidSpec"]["status"] == "False"
    assert types["Ready"]["reason"] == "Accepted"
    assert types["Ready"]["observedGeneration"] == obj["metadata"]["generation"]
    reasons = [e["reason"] for e in _events(kubectl, "chat")]
    assert "Accepted" in reasons


def test_spec_update_is_observed(operator, kubectl) -> None:
    _apply(kubectl, VALID % 3600)
    _wait_for(kubectl, "chat", ".status.observedGeneration", "1")
    _apply(kubectl, VALID % 7200)
    _wait_for(kubectl, "chat", ".status.observedGeneration", "2")


def test_unknown_node_pool_is_reported_not_lost(operator, kubectl) -> None:
    # Valid for the CRD, but the pool is not in the operator config: only the
    # operator can tell, and it must say so in status and in a Warning Event.
    _apply(
        kubectl,
        """
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: lost-pool}
spec:
  type: Experiment
  costAllocation: {team: research}
  nodePools: [h100-spot]
  experiment:
    targetRef: {kind: Job, name: trial}
""",
    )
    _wait_for(kubectl, "lost-pool", '.status.conditions[?(@.type=="InvalidSpec")].status', "True")
    status = _get(kubectl, "lost-pool")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert "spec.nodePools[0]" in conditions["InvalidSpec"]["message"]
    assert (
        "'h100-spot' is not defined in the operator config" in conditions["InvalidSpec"]["message"]
    )
    warnings = [e for e in _events(kubectl, "lost-pool") if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidSpec" and "h100-spot" in e["message"] for e in warnings)
    get = kubectl("get", "aiw", "lost-pool", "-n", NS)
    assert "False" in get.stdout.splitlines()[1].split()
