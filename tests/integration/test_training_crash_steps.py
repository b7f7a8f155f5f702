"""The operator killed (SIGKILL) at each step of a Training Job's placement.

The placement loop creates the Job suspended, then unsuspends it onto a pool,
then records that in ``status.placement``; a fallback re-suspends it, records
FallingBack, and places it again. A kill can fall between any action and its
record. Each test sets the cluster up as a killed operator leaves it at one such
point (or kills a real one there) and checks that the next operator completes
the step exactly once or rolls it back: the Job is never created twice, never
left suspended, and never left running without the operator watching it.
``test_training_crash.py`` covers a kill after FallingBack was recorded.
"""

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.kube import ok
from tests.support.polling import poll
from tests.support.training import (
    CONFIG,
    NS,
    SPOT,
    SPOT_NODES,
    event_reasons,
    get,
    placement_of,
    pod_template,
    running_pod,
    start_operator,
    workload_manifest,
)

from gpufinops.adapters.jobs import build_job, job_view, placement_patch
from gpufinops.config.model import parse_config


def _training(name: str) -> dict[str, Any]:
    return {"jobTemplate": {"template": pod_template(name)}, "spot": {"maxInterruptions": 1}}


def _job_as_created(kubectl: Any, name: str) -> dict[str, Any]:
    """The workload, and its Job as the operator creates it: owned, suspended, unplaced."""
    ok(kubectl("apply", "-f", "-", input=workload_manifest(name, _training(name))))
    uid = get(kubectl, "aiw", name)["metadata"]["uid"]
    body, _ = build_job(name, NS, uid, _training(name)["jobTemplate"])
    ok(kubectl("create", "-f", "-", input=json.dumps(body)))
    return get(kubectl, "job", name)


def _reasons(kubectl: Any, name: str) -> list[str]:
    return [r for r in event_reasons(kubectl, name) if r != "Accepted"]


def _placed_once_on_spot(kubectl: Any, name: str) -> dict[str, Any]:
    """status.placement once it names the pool, after exactly one SpotPlaced Event."""
    placement: dict[str, Any] = poll(
        lambda: (p := placement_of(kubectl, name)).get("pool") and p, "status.placement"
    )
    assert placement["pool"] == SPOT.name and placement["attempts"] == 1, placement
    poll(lambda: "SpotPlaced" in _reasons(kubectl, name), "the SpotPlaced Event")
    assert _reasons(kubectl, name).count("SpotPlaced") == 1
    return placement


@contextmanager
def _operator(kubeconfig: Path, config: Path, log_dir: Path, kubectl: Any, name: str) -> Any:
    """An operator for the test, deleting the workload and Job while it still runs
    (so that it releases the workload's finalizer)."""
    with start_operator(kubeconfig, config, log_dir):
        try:
            yield
        finally:
            kubectl("delete", "aiw", name, "-n", NS, "--wait=true", "--timeout=60s")
            kubectl("delete", "job", name, "-n", NS, "--wait=true", "--timeout=60s")


def test_killed_after_creating_the_job_the_next_operator_places_it_once(
    training_pools: None, kubeconfig: Path, training_config: Path, kubectl: Any, tmp_path: Path
) -> None:
    name = "created"
    _job_as_created(kubectl, name)
    with _operator(kubeconfig, training_config, tmp_path, kubectl, name):
        poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job on spot")
        _placed_once_on_spot(kubectl, name)
        assert "JobCreated" not in _reasons(kubectl, name), "the Job is not created again"


def test_killed_after_unsuspending_the_job_the_next_operator_adopts_the_placement(
    training_pools: None, kubeconfig: Path, training_config: Path, kubectl: Any, tmp_path: Path
) -> None:
    # Killed after unsuspending the Job onto spot, before writing status.placement:
    # the Job runs where it was put, and status still says nothing about it.
    name = "unrecorded"
    created = _job_as_created(kubectl, name)
    spot = parse_config(CONFIG).pool(SPOT.name)
    assert spot is not None
    patch = placement_patch(job_view(created), spot, None)
    ok(kubectl("patch", "job", name, "-n", NS, "--type=merge", "-p", json.dumps(patch)))
    pod = poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job on spot")
    with _operator(kubeconfig, training_config, tmp_path, kubectl, name):
        assert _placed_once_on_spot(kubectl, name)["phase"] == "Running"
        ready = next(c for c in get(kubectl, "aiw", name)["status"]["conditions"]
                     if c["type"] == "Ready")  # fmt: skip
        assert ready["reason"] == "Placed", ready
        assert "JobNotSuspended" not in _reasons(kubectl, name)
        job = get(kubectl, "job", name)
        assert job["spec"]["suspend"] is False
        assert job["metadata"]["generation"] == created["metadata"]["generation"] + 1
        still = running_pod(kubectl, name, SPOT_NODES)
        assert still is not None and still["metadata"]["uid"] == pod["metadata"]["uid"]


def test_killed_after_suspending_for_a_fallback_the_job_is_placed_again(
    training_pools: None, kubeconfig: Path, training_config: Path, kubectl: Any, tmp_path: Path
) -> None:
    # Killed after re-suspending the Job, before recording FallingBack: the status
    # still says Running. The move is rolled back to a fresh placement, never left
    # suspended.
    name = "resuspended"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with start_operator(kubeconfig, training_config, tmp_path / "first") as first:
        ok(kubectl("apply", "-f", "-", input=workload_manifest(name, _training(name))))
        poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job on spot")
        poll(lambda: placement_of(kubectl, name).get("phase") == "Running", "Running")
        first.kill()
    ok(kubectl("patch", "job", name, "-n", NS, "--type=merge", "-p",
               json.dumps({"spec": {"suspend": True}})))  # fmt: skip
    with _operator(kubeconfig, training_config, tmp_path / "second", kubectl, name):
        poll(lambda: placement_of(kubectl, name).get("attempts") == 2, "a second placement")
        poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job to run again")
        assert get(kubectl, "job", name)["spec"]["suspend"] is False
        placement = placement_of(kubectl, name)
        assert placement["phase"] == "Running" and placement["pool"] == SPOT.name
        assert _reasons(kubectl, name).count("JobCreated") == 1
