"""A Training workload drives only what it owns, on the real control plane (the Job
controller, the scheduler, KWOK nodes) with the operator as a process.

A Job someone created by hand under the name a jobTemplate workload needs is never
adopted: it stays as it was, and the workload says why in its Ready condition and
one Warning Event; once that Job is gone the workload creates its own. A bare pod
that copies the ``batch.kubernetes.io/job-name`` label of another workload's Job,
however interrupted it looks, is not that Job's pod: no interruption is counted,
the Job is not moved to on-demand.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.kube import ok
from tests.support.operator import RunningOperator
from tests.support.polling import poll, poll_until
from tests.support.training import (
    NS,
    SPOT,
    SPOT_NODES,
    event_reasons,
    get,
    placement_of,
    pod_template,
    ready_of,
    running_pod,
    start_operator,
    workload_manifest,
)

pytestmark = pytest.mark.usefixtures("training_state_on_timeout")

SETTLED = ("JobNameTaken", "JobCreated", "Placed")
"""Ready reasons of a workload whose loop has looked at the Job of its name."""


@pytest.fixture(scope="module")
def operator(
    training_pools: None, kubeconfig: Path, training_config: Path, tmp_path_factory
) -> Iterator[RunningOperator]:
    with start_operator(kubeconfig, training_config, tmp_path_factory.mktemp("ownership")) as op:
        yield op


def _job_exists(kubectl: Any, name: str) -> bool:
    return kubectl("get", "job", name, "-n", NS).returncode == 0


def test_a_job_made_by_hand_under_the_workloads_name_is_never_adopted(
    operator: RunningOperator, kubectl: Any
) -> None:
    name = "taken"
    theirs = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "someone-else"}},
        "spec": {"suspend": True, "template": pod_template("someone-else")},
    }  # fmt: skip
    ok(kubectl("create", "-f", "-", input=yaml.safe_dump(theirs)))
    before = get(kubectl, "job", name)
    training = {"jobTemplate": {"template": pod_template(name)}}
    ok(kubectl("apply", "-f", "-", input=workload_manifest(name, training)))
    try:
        ready = poll(lambda: (r := ready_of(kubectl, name)).get("reason") in SETTLED and r,
                     "the workload's loop to look at the Job of its name")  # fmt: skip
        assert (ready["status"], ready["reason"]) == ("False", "JobNameTaken"), ready
        assert f"Job {NS}/{name} already exists" in ready["message"]
        assert "rename the AIWorkload or delete the Job" in ready["message"]
        poll(lambda: "JobNameTaken" in event_reasons(kubectl, name), "the JobNameTaken Event")

        # Left as it was: still suspended, its spec never patched, not claimed.
        job = get(kubectl, "job", name)
        assert job["metadata"]["uid"] == before["metadata"]["uid"]
        assert job["spec"]["suspend"] is True
        assert job["metadata"]["generation"] == before["metadata"]["generation"]
        assert job["spec"]["template"] == before["spec"]["template"]
        assert not job["metadata"].get("ownerReferences")
        assert job["metadata"]["labels"] == before["metadata"]["labels"]
        assert placement_of(kubectl, name).get("attempts", 0) == 0

        # Removed by its author, the name is free: the workload creates its own Job.
        ok(kubectl("delete", "job", name, "-n", NS, "--wait=true", "--timeout=60s"))
        uid = get(kubectl, "aiw", name)["metadata"]["uid"]
        own = poll(lambda: _job_exists(kubectl, name) and get(kubectl, "job", name),
                   "the workload to create its own Job")  # fmt: skip
        assert own["metadata"]["uid"] != before["metadata"]["uid"]
        [owner] = own["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("AIWorkload", uid, True)
        assert own["metadata"]["labels"]["gpufinops.dev/workload"] == name
        poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the workload's own Job on spot")
        poll(lambda: ready_of(kubectl, name).get("reason") == "Placed", "Ready Placed")
        assert event_reasons(kubectl, name).count("JobNameTaken") == 1
    finally:
        kubectl("delete", "aiw", name, "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "job", name, "-n", NS, "--wait=true", "--timeout=60s")


def _impostor(name: str, job: str, node: str) -> dict[str, Any]:
    """A bare pod (no ownerReference) wearing the Job controller's labels for ``job``,
    bound to ``node`` and holding four GPUs there."""
    template = pod_template(job)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
        "spec": {**template["spec"], "nodeName": node},
    }  # fmt: skip


def _disruption() -> dict[str, Any]:
    """The condition the eviction API sets. Stamped now: the controller-manager resets a
    DisruptionTarget condition older than two minutes on a pod that is not deleted."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": {"conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
         "message": "evicted", "lastTransitionTime": now}]}}  # fmt: skip


def _disrupted(kubectl: Any, pod: str) -> bool:
    conditions = get(kubectl, "pod", pod)["status"].get("conditions") or []
    return any(c["type"] == "DisruptionTarget" and c["status"] == "True" for c in conditions)


def test_a_bare_pod_with_a_copied_job_name_label_is_no_interruption(
    operator: RunningOperator, kubectl: Any
) -> None:
    name = "victim"
    # One interruption would move the Job to on-demand.
    training = {"jobTemplate": {"template": pod_template(name)}, "spot": {"maxInterruptions": 1}}
    ok(kubectl("apply", "-f", "-", input=workload_manifest(name, training)))
    try:
        own = poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job on spot")
        placement = poll(lambda: (p := placement_of(kubectl, name)).get("costToFinishUSD") and p,
                         "status.placement with the cost to finish")  # fmt: skip
        assert placement["pool"] == SPOT.name and placement["phase"] == "Running"

        # Impostors: one on another spot node that the eviction API (or a drain) marked,
        # one bound to a node that is gone from the cluster.
        other = next(n for n in SPOT_NODES if n != own["spec"]["nodeName"])
        marked, stranded = f"{name}-fake", f"{name}-stranded"
        ok(kubectl("create", "-f", "-", input=json.dumps(_impostor(marked, name, other))))
        ok(kubectl("create", "-f", "-",
                   input=json.dumps(_impostor(stranded, name, "train-spot-gone"))))  # fmt: skip
        poll(lambda: get(kubectl, "pod", marked)["status"].get("phase") == "Running",
             "the impostor to run on its spot node")  # fmt: skip
        ok(kubectl("patch", "pod", marked, "-n", NS, "--subresource=status",
                   "--type=strategic", "-p", json.dumps(_disruption())))  # fmt: skip
        assert _disrupted(kubectl, marked)

        # A loop tick after the impostors were there: the doubled expected duration
        # shows in the cost to finish only once the loop has looked again.
        cost = float(placement["costToFinishUSD"])
        longer = {"spec": {"training": {"expectedDurationSeconds": 72000}}}
        ok(kubectl("patch", "aiw", name, "-n", NS, "--type=merge", "-p", json.dumps(longer)))
        after = poll_until(
            lambda: placement_of(kubectl, name),
            lambda p: p.get("interruptions", 0) > 0 or p.get("costToFinishUSD", 0) > 1.5 * cost,
            "a placement tick that read the doubled expected duration",
        )
        assert after.get("interruptions", 0) == 0, after
        assert not after.get("interruptionsByReason") and not after.get("interruptedPods")
        assert after["pool"] == SPOT.name and after["phase"] == "Running", after
        assert after["attempts"] == 1 and not after.get("onDemandOnly")
        assert _disrupted(kubectl, marked), "the impostor is still marked"
        reasons = event_reasons(kubectl, name)
        assert "SpotInterrupted" not in reasons and "FallingBackToOnDemand" not in reasons
        job = get(kubectl, "job", name)
        assert job["spec"]["suspend"] is False
        still = running_pod(kubectl, name, SPOT_NODES)
        assert still is not None and still["metadata"]["uid"] == own["metadata"]["uid"]
    finally:
        kubectl("delete", "pod", f"{name}-fake", f"{name}-stranded", "-n", NS,
                "--wait=true", "--timeout=60s", "--grace-period=0", "--force")  # fmt: skip
        kubectl("delete", "aiw", name, "-n", NS, "--wait=true", "--timeout=60s")
