"""An Experiment sandbox on the real control plane: its Deployment (a GPU pod on a
KWOK node) is scaled to zero at maxLifetimeSeconds — nothing deleted — and when the
user scales it up again the operator notices and restarts the timers."""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.operator import RunningOperator, running_operator

NS = "sandbox-it"
LIFETIME = 60  # the API's minimum


def _poll(check: Callable[[], Any], what: str, deadline: float) -> Any:
    end = time.monotonic() + deadline
    while not (value := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(0.25)  # polling an observable condition, with a deadline
    return value


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


MANIFESTS = [
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "notebook", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "notebook"}},
            "template": {
                "metadata": {"labels": {"app": "notebook"}},
                "spec": {
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                    "nodeSelector": {"gpufinops.dev/pool": "a100-on-demand"},
                    "containers": [
                        {
                            "name": "lab",
                            "image": "example.com/lab:1",
                            "resources": {"limits": {"nvidia.com/gpu": 1}},
                        }
                    ],
                },
            },
        },
    },
    {
        "apiVersion": "gpufinops.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": "lab", "namespace": NS},
        "spec": {
            "type": "Experiment",
            "costAllocation": {"team": "research"},
            "nodePools": ["a100-on-demand"],
            "experiment": {
                "targetRef": {"kind": "Deployment", "name": "notebook"},
                "maxLifetimeSeconds": LIFETIME,
            },
        },
    },
]


@pytest.fixture(scope="module")
def operator(kubeconfig: Path, kubectl, tmp_path_factory) -> Iterator[RunningOperator]:
    _ok(kubectl("create", "namespace", NS))
    workdir = tmp_path_factory.mktemp("sandbox")
    try:
        with running_operator(kubeconfig, workdir, "--namespace", NS, "--sync-seconds", "1") as op:
            yield op
            kubectl("delete", "aiw", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    finally:
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")


def _get(kubectl, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(_ok(kubectl("get", kind, name, "-n", NS, "-o", "json"))))


def _events(kubectl) -> list[str]:
    items = json.loads(_ok(kubectl(
        "get", "events", "-n", NS, "-o", "json",
        "--field-selector", "involvedObject.name=lab,involvedObject.kind=AIWorkload",
    )))["items"]  # fmt: skip
    return [e["reason"] for e in items]


def test_sandbox_is_scaled_to_zero_at_its_lifetime_and_woken_by_the_user(
    operator: RunningOperator, kubectl
) -> None:
    _ok(kubectl("apply", "-f", "-", input=yaml.safe_dump_all(MANIFESTS)))
    _poll(lambda: _get(kubectl, "deployment", "notebook")["status"].get("readyReplicas") == 1,
          "the notebook pod to run", 60)  # fmt: skip
    started = time.monotonic()
    _poll(lambda: _get(kubectl, "deployment", "notebook")["spec"]["replicas"] == 0,
          "the sandbox to be scaled to zero", LIFETIME + 30)  # fmt: skip
    # Not before its lifetime (counted from the AIWorkload's creation, before the pod ran).
    assert time.monotonic() - started <= LIFETIME + 30
    # The status is written after the scale: wait for it, do not read it at once.
    sandbox = _poll(
        lambda: (
            (s := _get(kubectl, "aiw", "lab")["status"].get("sandbox") or {}).get("shutdownReason")
            and s
        ),
        "the shutdown to be recorded in status.sandbox",
        30,
    )
    assert sandbox["shutdownReason"] == "MaxLifetime"
    assert sandbox["replicasBefore"] == 1
    _poll(lambda: "SandboxShutDown" in _events(kubectl), "the SandboxShutDown event", 30)
    # Nothing deleted: the Deployment is still there, at zero.
    assert _get(kubectl, "deployment", "notebook")["metadata"]["name"] == "notebook"

    _ok(kubectl("scale", "deployment", "notebook", "-n", NS, "--replicas=1"))
    _poll(lambda: "SandboxWoken" in _events(kubectl), "the SandboxWoken event", 30)
    woken = _poll(
        lambda: (
            (s := _get(kubectl, "aiw", "lab")["status"]["sandbox"]).get("shutDownAt") is None and s
        ),
        "the timers to restart",
        30,
    )
    assert woken["activeSince"] is not None
    # It is left running: a fresh lifetime has begun.
    assert _get(kubectl, "deployment", "notebook")["spec"]["replicas"] == 1
