"""The operator killed (SIGKILL) in the middle of a spot fallback: the Job suspended,
status saying FallingBack. The next operator finishes the move exactly once — the Job
is never left suspended, never placed twice."""

import json
from pathlib import Path

import pytest
from tests.support.kube import KubectlRun, ok
from tests.support.polling import poll
from tests.support.training import (
    NS,
    ON_DEMAND,
    ON_DEMAND_NODES,
    SPOT_NODES,
    event_reasons,
    get,
    live_pod_nodes,
    placement_of,
    pod_template,
    running_pod,
    start_operator,
    workload_manifest,
)


def test_a_fallback_cut_short_by_sigkill_completes_exactly_once(
    training_pools: None,
    kubeconfig: Path,
    training_config: Path,
    kubectl: KubectlRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    training = {"jobTemplate": {"template": pod_template("crash")},
                "spot": {"maxInterruptions": 1}}  # fmt: skip
    with start_operator(kubeconfig, training_config, tmp_path_factory.mktemp("first")) as first:
        ok(kubectl("apply", "-f", "-", input=workload_manifest("crash", training)))
        poll(lambda: running_pod(kubectl, "crash", SPOT_NODES), "the Job on spot")
        poll(lambda: placement_of(kubectl, "crash").get("phase") == "Running", "Running")
        job_uid = get(kubectl, "job", "crash")["metadata"]["uid"]
        first.kill()

    # What a kill between "suspend the Job" and "re-place it" leaves behind.
    ok(kubectl("patch", "job", "crash", "-n", NS, "--type=merge", "-p",
               json.dumps({"spec": {"suspend": True}})))  # fmt: skip
    placement = {"phase": "FallingBack", "onDemandOnly": True,
                 "fallbackReason": "MaxInterruptions", "interruptions": 1}  # fmt: skip
    ok(kubectl("patch", "aiw", "crash", "-n", NS, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"placement": placement}})))  # fmt: skip
    with start_operator(kubeconfig, training_config, tmp_path_factory.mktemp("second")):
        try:
            poll(lambda: running_pod(kubectl, "crash", ON_DEMAND_NODES),
                 "the Job to run on on-demand after the restart")  # fmt: skip
            placement = poll(
                lambda: (p := placement_of(kubectl, "crash")).get("pool") == ON_DEMAND.name and p,
                "status.placement on on-demand",
            )
            assert placement["phase"] == "Running"
            assert placement["attempts"] == 2
            job = get(kubectl, "job", "crash")
            assert job["spec"]["suspend"] is False
            assert job["spec"]["template"]["spec"]["nodeSelector"] == {
                "gpufinops.dev/pool": ON_DEMAND.name
            }
            poll(lambda: "FellBackToOnDemand" in event_reasons(kubectl, "crash"), "the Event")
            assert event_reasons(kubectl, "crash").count("FellBackToOnDemand") == 1
            assert event_reasons(kubectl, "crash").count("JobCreated") == 1
            # Moved, not re-created: the Job the first operator made, now on on-demand only.
            assert job["metadata"]["uid"] == job_uid
            assert live_pod_nodes(kubectl, "crash") == ON_DEMAND_NODES
        finally:  # while an operator runs, to release the workload's finalizer
            kubectl("delete", "aiw", "crash", "-n", NS, "--wait=true", "--timeout=60s")
