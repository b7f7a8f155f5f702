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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.kube import ok
from tests.support.operator import RunningOperator
from tests.support.polling import poll, poll_until
from tests.support.training import (
    NOTICE,
    NS,
    ON_DEMAND,
    ON_DEMAND_NODES,
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


@pytest.fixture(scope="module")
def operator(
    training_pools: None, kubeconfig: Path, training_config: Path, tmp_path_factory, kubectl
) -> Iterator[RunningOperator]:
    # JobSet's CRD is there before the operator, as in a cluster that runs JobSet: a CRD
    # created while Kopf runs is served only once API discovery lists it, which Kopf
    # learns from the CRD's own events and can miss (then only a restart serves it).
    ok(kubectl("apply", "-f", "-", input=JOBSET_CRD))
    ok(kubectl("wait", "crd/jobsets.jobset.x-k8s.io", "--for=condition=Established",
               "--timeout=60s"))  # fmt: skip
    with start_operator(kubeconfig, training_config, tmp_path_factory.mktemp("training")) as op:
        yield op


def _interrupt(kubectl, node: str) -> None:
    ok(kubectl("taint", "node", node, f"{NOTICE}=true:NoSchedule"))


def _untaint(kubectl) -> None:
    for node in SPOT_NODES:
        kubectl("taint", "node", node, f"{NOTICE}:NoSchedule-")


def test_job_lands_on_spot_survives_an_interruption_and_falls_back_at_the_limit(
    operator: RunningOperator, kubectl
) -> None:
    template = {"parallelism": 1, "backoffLimit": 6, "template": pod_template("train")}
    training = {"jobTemplate": template, "spot": {"maxInterruptions": 2}}
    ok(kubectl("apply", "-f", "-", input=workload_manifest("train", training)))
    try:
        job = poll(
            lambda: (
                get(kubectl, "job", "train")
                if kubectl("get", "job", "train", "-n", NS).returncode == 0
                else None
            ),
            "the Job to be created",
        )
        assert job["metadata"]["ownerReferences"][0]["kind"] == "AIWorkload"
        rules = job["spec"]["podFailurePolicy"]["rules"]
        assert rules[0] == {"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget", "status": "True"}]}  # fmt: skip

        first = poll(lambda: running_pod(kubectl, "train", SPOT_NODES), "a pod on spot")
        placement = poll(lambda: placement_of(kubectl, "train").get("pool") and placement_of(
            kubectl, "train"), "status.placement")  # fmt: skip
        assert placement["pool"] == SPOT.name and placement["capacityType"] == "spot"
        assert "SpotPlaced" in event_reasons(kubectl, "train")

        # Interruption 1: the notice taint lands, then the pod is drained away.
        _interrupt(kubectl, first["spec"]["nodeName"])
        poll(lambda: placement_of(kubectl, "train").get("interruptions") == 1,
             "the first interruption to be counted")  # fmt: skip
        ok(kubectl("delete", "pod", first["metadata"]["name"], "-n", NS, "--wait=false"))
        others = [n for n in SPOT_NODES if n != first["spec"]["nodeName"]]
        second = poll(lambda: running_pod(kubectl, "train", others),
                      "the Job to run again on another spot node")  # fmt: skip
        placement = placement_of(kubectl, "train")
        assert placement["interruptions"] == 1
        assert placement["interruptionsByReason"] == {"SpotInterruptionNotice": 1}
        assert placement["pool"] == SPOT.name
        assert "SpotInterrupted" in event_reasons(kubectl, "train")

        # Interruption 2 reaches maxInterruptions: re-suspend, re-place, unsuspend.
        _interrupt(kubectl, second["spec"]["nodeName"])
        poll(lambda: running_pod(kubectl, "train", ON_DEMAND_NODES),
             "the Job to run on on-demand")  # fmt: skip
        placement = poll(
            lambda: (p := placement_of(kubectl, "train")).get("pool") == ON_DEMAND.name and p,
            "status.placement to show on-demand",
        )
        assert placement["interruptions"] == 2
        assert placement["onDemandOnly"] is True
        assert placement["fallbackReason"] == "MaxInterruptions"
        assert placement["attempts"] == 2
        job = get(kubectl, "job", "train")
        assert job["spec"]["suspend"] is False
        selector = job["spec"]["template"]["spec"]["nodeSelector"]
        assert selector == {"gpufinops.dev/pool": ON_DEMAND.name}
        poll(lambda: "FellBackToOnDemand" in event_reasons(kubectl, "train"), "FellBackToOnDemand")
        ready = next(c for c in get(kubectl, "aiw", "train")["status"]["conditions"]
                     if c["type"] == "Ready")  # fmt: skip
        assert ready["status"] == "True" and ready["reason"] == "Placed"
    finally:
        _untaint(kubectl)
        kubectl("delete", "aiw", "train", "-n", NS, "--wait=true", "--timeout=60s")


def _spent(kubectl: Any, name: str) -> float:
    """The workload's spend so far, as the cost loop (the one ledger) recorded it."""
    cost = get(kubectl, "aiw", name).get("status", {}).get("cost") or {}
    return float(cost.get("totalUSD") or 0)


def test_a_users_suspended_job_is_placed_the_same_way(operator: RunningOperator, kubectl) -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "mine", "namespace": NS},
        "spec": {"suspend": True, "template": pod_template("mine"),
                 "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [
                     {"type": "DisruptionTarget", "status": "True"}]}]}},
    }  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(job)))
    ok(kubectl("apply", "-f", "-", input=workload_manifest("byref", {"jobRef": {"name": "mine"}})))
    try:
        pod = poll(lambda: running_pod(kubectl, "mine", SPOT_NODES), "the user's Job on spot")
        assert pod["metadata"]["labels"]["gpufinops.dev/pool"] == SPOT.name
        placed = get(kubectl, "job", "mine")
        assert placed["spec"]["suspend"] is False
        assert placed["spec"]["template"]["spec"]["nodeSelector"] == {
            "gpufinops.dev/pool": SPOT.name
        }
        # The user's own tolerations stay.
        tolerations = placed["spec"]["template"]["spec"]["tolerations"]
        assert {"key": "kwok.x-k8s.io/node", "operator": "Exists"} in tolerations
        placement = poll(lambda: placement_of(kubectl, "byref"), "status.placement")
        assert placement["job"] == "mine" and placement["pool"] == SPOT.name
        assert get(kubectl, "aiw", "byref")["status"]["target"] == "Job/mine"
    finally:
        kubectl("delete", "aiw", "byref", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "job", "mine", "-n", NS, "--wait=true", "--timeout=60s")


def test_a_workload_naming_no_pool_is_placed_on_the_pools_open_to_it(
    operator: RunningOperator, kubectl
) -> None:
    manifest = yaml.safe_load(
        workload_manifest("anypool", {"jobTemplate": {"template": pod_template("anypool")}})
    )
    del manifest["spec"]["nodePools"]  # the API says: every pool
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)))
    try:
        pod = poll(
            lambda: running_pod(kubectl, "anypool", SPOT_NODES + ON_DEMAND_NODES),
            "the Job placed on one of the configured pools",
        )
        placement = poll(lambda: placement_of(kubectl, "anypool"), "status.placement")
        assert placement["pool"] in (SPOT.name, ON_DEMAND.name), placement
        assert pod["spec"]["nodeName"] in SPOT_NODES + ON_DEMAND_NODES
    finally:
        kubectl("delete", "aiw", "anypool", "-n", NS, "--wait=true", "--timeout=60s")


def test_a_job_kueue_admits_is_never_unsuspended_by_the_operator(
    operator: RunningOperator, kubectl
) -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "queued", "namespace": NS,
                     "labels": {"kueue.x-k8s.io/queue-name": "team-a"}},
        "spec": {"suspend": True, "template": pod_template("queued")},
    }  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(job)))
    ok(kubectl("apply", "-f", "-", input=workload_manifest("kq", {"jobRef": {"name": "queued"}})))
    try:
        ready = poll(
            lambda: (r := ready_of(kubectl, "kq")).get("reason") == "WaitingForKueue" and r,
            "the workload waiting for Kueue",
        )
        assert "queue team-a" in ready["message"]

        # No Kueue here: nothing admits it, and the operator must not either.
        def still_held() -> float:
            held = get(kubectl, "job", "queued")
            assert held["spec"]["suspend"] is True, "the operator unsuspended a Kueue Job"
            assert "nodeSelector" not in held["spec"]["template"]["spec"]
            return time.monotonic()

        end = time.monotonic() + 5  # five ticks of the placement loop (1 s sync)
        poll_until(still_held, lambda t: t >= end, "5 s of ticks leaving the Job to Kueue")
        # Kueue admits it onto the spot flavor (as its controller would).
        admit = {"spec": {"suspend": False, "template": {"spec": {
            "nodeSelector": {"gpufinops.dev/pool": SPOT.name}}}}}  # fmt: skip
        ok(kubectl("patch", "job", "queued", "-n", NS, "--type=merge", "-p", json.dumps(admit)))
        poll(lambda: running_pod(kubectl, "queued", SPOT_NODES), "the admitted Job running")
        poll(lambda: ready_of(kubectl, "kq").get("reason") == "AdmittedByKueue", "admitted")
        assert placement_of(kubectl, "kq")["pool"] == SPOT.name
        assert "JobCreated" not in event_reasons(kubectl, "kq")
        assert "ManagedByKueue" in event_reasons(kubectl, "kq")
    finally:
        kubectl("delete", "aiw", "kq", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "job", "queued", "-n", NS, "--wait=true", "--timeout=60s")


def test_a_job_template_with_a_kueue_queue_is_created_for_kueue_and_left_to_it(
    operator: RunningOperator, kubectl
) -> None:
    training = {"jobTemplate": {"template": pod_template("kt")}, "kueueQueueName": "team-a"}
    ok(kubectl("apply", "-f", "-", input=workload_manifest("kt", training)))
    try:
        job = poll(lambda: kubectl("get", "job", "kt", "-n", NS).returncode == 0 and
                   get(kubectl, "job", "kt"), "the Job created for Kueue")  # fmt: skip
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        poll(lambda: ready_of(kubectl, "kt").get("reason") == "WaitingForKueue", "waiting")

        def still_held() -> float:
            held = get(kubectl, "job", "kt")
            assert held["spec"]["suspend"] is True, "the operator unsuspended a Kueue Job"
            return time.monotonic()

        end = time.monotonic() + 5
        poll_until(still_held, lambda t: t >= end, "5 s of ticks leaving the Job to Kueue")
    finally:
        kubectl("delete", "aiw", "kt", "-n", NS, "--wait=true", "--timeout=60s")


JOBSET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: jobsets.jobset.x-k8s.io}
spec:
  group: jobset.x-k8s.io
  scope: Namespaced
  names: {plural: jobsets, singular: jobset, kind: JobSet}
  versions:
    - name: v1alpha2
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""
"""JobSet's kind and group with a schema of the test's own: no JobSet controller runs
here, so the test makes the child Jobs itself, as that controller would."""


def _child_job(jobset: dict, index: int) -> dict:
    """Child Job ``<jobset>-workers-<index>`` as the JobSet controller makes it: its
    JobSet's template of now, controlled by the JobSet."""
    meta = jobset["metadata"]
    template = jobset["spec"]["replicatedJobs"][0]["template"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{meta['name']}-workers-{index}", "namespace": NS,
                     "ownerReferences": [{"apiVersion": "jobset.x-k8s.io/v1alpha2",
                                          "kind": "JobSet", "name": meta["name"],
                                          "uid": meta["uid"], "controller": True}]},
        "spec": template["spec"],
    }  # fmt: skip


def test_a_jobset_is_placed_as_one_and_its_child_jobs_pods_count(
    operator: RunningOperator, kubectl
) -> None:
    ok(kubectl("apply", "-f", "-", input=JOBSET_CRD))
    ok(kubectl("wait", "crd/jobsets.jobset.x-k8s.io", "--for=condition=Established",
               "--timeout=60s"))  # fmt: skip
    jobset = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": "js", "namespace": NS},
        "spec": {"suspend": True, "replicatedJobs": [
            {"name": "workers", "replicas": 2,
             "template": {"spec": {"parallelism": 1, "template": pod_template("js")}}}]},
    }  # fmt: skip
    try:
        ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(jobset)))
        training = {"jobRef": {"kind": "JobSet", "name": "js"}}
        ok(kubectl("apply", "-f", "-", input=workload_manifest("byset", training)))
        placed = poll(
            lambda: (j := get(kubectl, "jobset", "js"))["spec"]["suspend"] is False and j,
            "the JobSet placed and resumed",
        )
        pod_tmpl = placed["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
        assert pod_tmpl["spec"]["nodeSelector"] == {"gpufinops.dev/pool": SPOT.name}
        assert pod_tmpl["metadata"]["labels"]["gpufinops.dev/pool"] == SPOT.name
        # The user's own tolerations stay, and the rest of the JobSet is as written.
        assert {"key": "kwok.x-k8s.io/node", "operator": "Exists"} in pod_tmpl["spec"][
            "tolerations"]  # fmt: skip
        assert placed["spec"]["replicatedJobs"][0]["replicas"] == 2
        for index in (0, 1):
            child = yaml.safe_dump(_child_job(placed, index))
            ok(kubectl("apply", "-f", "-", input=child))
        first = poll(lambda: running_pod(kubectl, "js-workers-0", SPOT_NODES), "a child on spot")
        placement = poll(lambda: placement_of(kubectl, "byset"), "status.placement")
        assert placement["pool"] == SPOT.name and placement["job"] == "js"
        assert get(kubectl, "aiw", "byset")["status"]["target"] == "JobSet/js"
        # A child Job's pod is the JobSet's: its interruption counts for the workload.
        _interrupt(kubectl, first["spec"]["nodeName"])
        poll(lambda: placement_of(kubectl, "byset").get("interruptions") == 1,
             "the child pod's interruption counted")  # fmt: skip
        # The JobSet completes (its controller's condition): so does the workload.
        completed = {"type": "Completed", "status": "True", "reason": "AllJobsCompleted",
                     "message": "done", "lastTransitionTime": "2026-12-07T00:00:00Z"}  # fmt: skip
        done = {"status": {"conditions": [completed]}}
        ok(kubectl("patch", "jobset", "js", "-n", NS, "--subresource=status", "--type=merge",
                   "-p", json.dumps(done)))  # fmt: skip
        poll(lambda: ready_of(kubectl, "byset").get("reason") == "JobSucceeded", "JobSucceeded")
        # Its spend is the cost loop's, counted through the child Jobs' pods.
        poll(lambda: _spent(kubectl, "byset") > 0, "the JobSet's spend in status.cost")
    finally:
        _untaint(kubectl)
        kubectl("delete", "aiw", "byset", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "jobs", "js-workers-0", "js-workers-1", "-n", NS, "--wait=true",
                "--timeout=60s")  # fmt: skip
        kubectl("delete", "crd", "jobsets.jobset.x-k8s.io", "--wait=true", "--timeout=60s")
