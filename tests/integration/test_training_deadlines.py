"""Deadline-aware spot placement on the real control plane: spot capacity followed
through KWOK nodes being tainted (an interruption notice: capacity gone), appearing,
and the deadline rule moving a running Job to on-demand before a loss would be late.

Runs on the Training tests' own pools (``tests/support/training.py``).
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.kube import ok
from tests.support.operator import RunningOperator
from tests.support.polling import poll
from tests.support.training import (
    NOTICE,
    NS,
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

from gpufinops.localcluster.nodes import node_manifest

NEW_NODE = "train-spot-new"

pytestmark = pytest.mark.usefixtures("training_state_on_timeout")


@pytest.fixture(scope="module")
def operator(
    training_pools: None, kubeconfig: Path, training_config: Path, tmp_path_factory: Any
) -> Iterator[RunningOperator]:
    with start_operator(kubeconfig, training_config, tmp_path_factory.mktemp("deadlines")) as op:
        yield op


def _deadline(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def test_a_job_waits_for_spot_runs_where_it_appears_and_leaves_it_for_its_deadline(
    operator: RunningOperator, kubectl: Any
) -> None:
    for node in SPOT_NODES:  # every spot node has its interruption notice: no capacity
        ok(kubectl("taint", "node", node, f"{NOTICE}=true:NoSchedule", "--overwrite"))
    template = {"parallelism": 1, "backoffLimit": 6, "template": pod_template("dl")}
    # 10 h of work (the default expected duration) due in 30 h: plenty of slack.
    training = {"jobTemplate": template, "deadline": _deadline(30),
                "spot": {"maxInterruptions": 20}}  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=workload_manifest("dl", training)))
    try:
        poll(lambda: ready_of(kubectl, "dl").get("reason") == "WaitingForSpot",
             "the workload to wait for spot")  # fmt: skip
        assert get(kubectl, "job", "dl")["spec"]["suspend"] is True
        poll(lambda: "WaitingForSpot" in event_reasons(kubectl, "dl"), "the WaitingForSpot Event")

        # Spot capacity appears: a new node of the pool, Ready and without a notice.
        node = node_manifest(SPOT, NEW_NODE)
        ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(node)))
        pod = poll(lambda: running_pod(kubectl, "dl", [NEW_NODE]), "the Job on the new spot node")
        assert pod["spec"]["nodeName"] == NEW_NODE
        assert placement_of(kubectl, "dl")["capacityType"] == "spot"
        assert "SpotPlaced" in event_reasons(kubectl, "dl")

        # The deadline moves in to 10.2 h for 10 h of work: losing this spot attempt
        # would now be late, so the Job goes to on-demand before anything is lost.
        patch = {"spec": {"training": {"deadline": _deadline(10.2)}}}
        ok(kubectl("patch", "aiw", "dl", "-n", NS, "--type=merge", "-p", json.dumps(patch)))
        poll(lambda: running_pod(kubectl, "dl", ON_DEMAND_NODES), "the Job on on-demand")
        placement = placement_of(kubectl, "dl")
        assert placement["capacityType"] == "on-demand"
        assert placement.get("onDemandOnly") is not True  # it may come back to spot
        assert placement.get("interruptions", 0) == 0
        assert "FallingBackToOnDemand" in event_reasons(kubectl, "dl")
    finally:
        kubectl("delete", "aiw", "dl", "-n", NS, "--wait=true", "--timeout=60s")
        kubectl("delete", "node", NEW_NODE, "--wait=true", "--timeout=60s")
        for node in SPOT_NODES:
            kubectl("taint", "node", node, f"{NOTICE}:NoSchedule-")
