"""An Experiment sandbox on the real control plane: its Deployment (a GPU pod on a
KWOK node) is scaled to zero at maxLifetimeSeconds — nothing deleted — and when the
user scales it up again the operator notices and restarts the timers."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.kube import deployment_manifest, event_reasons, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll

NS = "sandbox-it"
LIFETIME = 60  # the API's minimum


MANIFESTS = [
    deployment_manifest(
        "notebook",
        NS,
        {
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
    ),
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
    ok(kubectl("create", "namespace", NS))
    workdir = tmp_path_factory.mktemp("sandbox")
    try:
        with running_operator(kubeconfig, workdir, "--namespace", NS, "--sync-seconds", "1") as op:
            yield op
            kubectl("delete", "aiw", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    finally:
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s")


def _get(kubectl, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(ok(kubectl("get", kind, name, "-n", NS, "-o", "json"))))


def test_sandbox_is_scaled_to_zero_at_its_lifetime_and_woken_by_the_user(
    operator: RunningOperator, kubectl
) -> None:
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump_all(MANIFESTS)))
    poll(lambda: _get(kubectl, "deployment", "notebook")["status"].get("readyReplicas") == 1,
         "the notebook pod to run")  # fmt: skip
    started = time.monotonic()
    poll(lambda: _get(kubectl, "deployment", "notebook")["spec"]["replicas"] == 0,
         "the sandbox to be scaled to zero", deadline=LIFETIME + 30)  # fmt: skip
    # Not before its lifetime (counted from the AIWorkload's creation, before the pod ran).
    assert time.monotonic() - started <= LIFETIME + 30
    # The status is written after the scale: wait for it, do not read it at once.
    sandbox = poll(
        lambda: (
            (s := _get(kubectl, "aiw", "lab")["status"].get("sandbox") or {}).get("shutdownReason")
            and s
        ),
        "the shutdown to be recorded in status.sandbox",
        deadline=30,
    )
    assert sandbox["shutdownReason"] == "MaxLifetime"
    assert sandbox["replicasBefore"] == 1
    poll(
        lambda: "SandboxShutDown" in event_reasons(kubectl, NS, "lab"),
        "the SandboxShutDown event",
        deadline=30,
    )
    # Nothing deleted: the Deployment is still there, at zero.
    assert _get(kubectl, "deployment", "notebook")["metadata"]["name"] == "notebook"

    ok(kubectl("scale", "deployment", "notebook", "-n", NS, "--replicas=1"))
    poll(
        lambda: "SandboxWoken" in event_reasons(kubectl, NS, "lab"),
        "the SandboxWoken event",
        deadline=30,
    )
    woken = poll(
        lambda: (
            (s := _get(kubectl, "aiw", "lab")["status"]["sandbox"]).get("shutDownAt") is None and s
        ),
        "the timers to restart",
        deadline=30,
    )
    assert woken["activeSince"] is not None
    # It is left running: a fresh lifetime has begun.
    assert _get(kubectl, "deployment", "notebook")["spec"]["replicas"] == 1
