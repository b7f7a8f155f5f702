"""The operator killed (SIGKILL) in the middle of a spot fallback: the Job suspended,
status saying FallingBack. The next operator finishes the move exactly once — the Job
is never left suspended, never placed twice."""

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.test_training import (
    CONFIG,
    NS,
    ON_DEMAND,
    ON_DEMAND_NODES,
    SPOT,
    SPOT_NODES,
    _events,
    _get,
    _ok,
    _placement,
    _poll,
    _running_pod,
    _workload,
)
from tests.integration.test_training import (
    _pod_template as pod_template,
)
from tests.integration.test_training import (
    pools as pools,
)
from tests.support.operator import running_operator


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def _start(kubeconfig: Path, config: Path, log_dir: Path) -> Any:
    return running_operator(
        kubeconfig, log_dir, "--config", str(config), "--namespace", NS, "--sync-seconds", "1"
    )


def test_a_fallback_cut_short_by_sigkill_completes_exactly_once(
    pools: None,
    kubeconfig: Path,
    config_file: Path,
    kubectl,
    tmp_path_factory,
) -> None:
    training = {"jobTemplate": {"template": pod_template("crash")},
                "spot": {"maxInterruptions": 1}}  # fmt: skip
    with _start(kubeconfig, config_file, tmp_path_factory.mktemp("first")) as first:
        _ok(kubectl("apply", "-f", "-", input=_workload("crash", training)))
        _poll(lambda: _running_pod(kubectl, "crash", SPOT_NODES), "the Job on spot")
        _poll(lambda: _placement(kubectl, "crash").get("phase") == "Running", "Running")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()

    # What a kill between "suspend the Job" and "re-place it" leaves behind.
    _ok(kubectl("patch", "job", "crash", "-n", NS, "--type=merge", "-p",
                json.dumps({"spec": {"suspend": True}})))  # fmt: skip
    placement = {"phase": "FallingBack", "onDemandOnly": True,
                 "fallbackReason": "MaxInterruptions", "interruptions": 1}  # fmt: skip
    _ok(kubectl("patch", "aiw", "crash", "-n", NS, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"placement": placement}})))  # fmt: skip
    with _start(kubeconfig, config_file, tmp_path_factory.mktemp("second")):
        try:
            _poll(lambda: _running_pod(kubectl, "crash", ON_DEMAND_NODES),
                      "the Job to run on on-demand after the restart")  # fmt: skip
            placement = _poll(
                lambda: (p := _placement(kubectl, "crash")).get("pool") == ON_DEMAND.name and p,
                "status.placement on on-demand",
            )
            assert placement["phase"] == "Running"
            assert placement["attempts"] == 2
            job = _get(kubectl, "job", "crash")
            assert job["spec"]["suspend"] is False
            assert job["spec"]["template"]["spec"]["nodeSelector"] == {
                "gpufinops.dev/pool": ON_DEMAND.name
            }
            _poll(lambda: "FellBackToOnDemand" in _events(kubectl, "crash"), "the Event")
            assert _events(kubectl, "crash").count("FellBackToOnDemand") == 1
            assert _events(kubectl, "crash").count("JobCreated") == 1
            assert SPOT.name not in json.dumps(job["spec"]["template"]["spec"]["nodeSelector"])
        finally:  # while an operator runs, to release the workload's finalizer
            kubectl("delete", "aiw", "crash", "-n", NS, "--wait=true", "--timeout=60s")
