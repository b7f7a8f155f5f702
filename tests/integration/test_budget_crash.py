"""Budget enforcement (Suspend) across SIGKILLs and a month boundary passed while down.

The cost loop writes ``status.cost`` and, once the month's budget is spent,
``status.budget.enforcement: Suspend``; the Training loop then suspends the Job
and the Experiment loop scales its sandbox to zero. Everything is kept in
status, so each step survives a kill: a restarted operator suspends exactly once,
keeps it suspended within the period, and when the month is over (here: the last
accounting is moved a month back while no operator runs, as a month spent down
would leave it) the budget resets and the Training Job is placed again, once.
An Experiment stays down until its user wakes it, and is not shut down again.
"""

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.budget import set_cost
from tests.support.kube import deployment_manifest, ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll
from tests.support.training import (
    CONFIG,
    NS,
    ON_DEMAND,
    SPOT_NODES,
    event_reasons,
    get,
    placement_of,
    pod_template,
    running_pod,
    start_operator,
    workload_manifest,
)

pytestmark = pytest.mark.usefixtures("training_state_on_timeout")

BUDGET = {"monthlyUSD": 100, "enforcement": "Suspend"}
OVER = 150.0


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("budget-crash") / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "cost": {"intervalSeconds": 1}}))
    return path


class Operators:
    """Starts operators one after another; each is SIGKILLed by the next step."""

    def __init__(self, kubeconfig: Path, config: Path, root: Path) -> None:
        self.kubeconfig, self.config, self.root, self.count = kubeconfig, config, root, 0

    def start(self) -> AbstractContextManager[RunningOperator]:
        self.count += 1
        log_dir = self.root / f"operator-{self.count}"
        log_dir.mkdir()
        return start_operator(self.kubeconfig, self.config, log_dir)


def _status(kubectl: Any, name: str) -> dict[str, Any]:
    return dict(get(kubectl, "aiw", name).get("status") or {})


def _enforcement(kubectl: Any, name: str) -> str | None:
    return (_status(kubectl, name).get("budget") or {}).get("enforcement")


def _suspended(kubectl: Any, job: str) -> bool:
    return bool(get(kubectl, "job", job)["spec"].get("suspend"))


STALE = "written while no operator ran"


def _stale_ready(kubectl: Any, name: str) -> None:
    """Ready's message replaced by one no operator writes: the next placement tick
    rewrites it, which tells that a new operator has looked at the workload."""
    conditions = _status(kubectl, name)["conditions"]
    for condition in conditions:
        if condition["type"] == "Ready":
            condition["message"] = STALE
    patch = json.dumps({"status": {"conditions": conditions}})
    ok(kubectl("patch", "aiw", name, "-n", NS, "--subresource=status", "--type=merge",
               "-p", patch))  # fmt: skip


def _ticked(kubectl: Any, name: str) -> bool:
    ready = [c for c in _status(kubectl, name).get("conditions", []) if c["type"] == "Ready"]
    return bool(ready) and ready[0]["message"] != STALE


@pytest.fixture
def cleanup(kubectl: Any, config_file: Path, kubeconfig: Path, tmp_path: Path) -> Iterator[None]:
    yield
    # With an operator running, so that it releases the workloads' finalizers.
    with running_operator(kubeconfig, tmp_path, "--config", str(config_file),
                          "--namespace", NS):  # fmt: skip
        kubectl("delete", "aiw", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    kubectl("delete", "jobs,deployments", "--all", "-n", NS, "--wait=true", "--timeout=60s")


def _placed_then_killed(ops: Operators, kubectl: Any, name: str) -> None:
    """A Training workload with the budget, its Job running on spot, its operator killed."""
    template = pod_template(name)  # runs for a day (its completion jitter included)
    manifest = yaml.safe_load(workload_manifest(name, {"jobTemplate": {"template": template}}))
    manifest["spec"]["budget"] = BUDGET
    with ops.start() as first:
        ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)))
        poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job on spot")
        poll(lambda: placement_of(kubectl, name).get("phase") == "Running", "Running")
        first.kill()


def test_a_training_job_is_suspended_once_and_placed_again_once_the_month_is_over(
    training_pools: None, cleanup: None, kubeconfig: Path, config_file: Path, kubectl: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    name = "budget"
    ops = Operators(kubeconfig, config_file, tmp_path)
    _placed_then_killed(ops, kubectl, name)
    # Killed as the month's spend went over the budget, before anything enforced it.
    set_cost(kubectl, NS, name, OVER, datetime.now(UTC))

    with ops.start() as second:
        poll(lambda: _enforcement(kubectl, name) == "Suspend", "the budget to say Suspend")
        poll(lambda: _suspended(kubectl, name), "the Job to be suspended")
        poll(lambda: placement_of(kubectl, name).get("phase") == "Suspended", "phase Suspended")
        poll(lambda: "BudgetSuspended" in event_reasons(kubectl, name), "the BudgetSuspended Event")
        second.kill()

    # Killed while suspended, same month: the next operator keeps it so, silently.
    _stale_ready(kubectl, name)
    with ops.start() as third:
        poll(lambda: _ticked(kubectl, name), "a placement tick of the new operator")
        assert _suspended(kubectl, name)
        job = get(kubectl, "job", name)
        assert placement_of(kubectl, name)["phase"] == "Suspended", json.dumps(job["status"])
        assert event_reasons(kubectl, name).count("BudgetSuspended") == 1
        third.kill()

    # The month ends while no operator runs: the last accounting was last month.
    set_cost(kubectl, NS, name, OVER, datetime.now(UTC) - timedelta(days=32))
    with ops.start():
        poll(lambda: not _suspended(kubectl, name), "the Job to be placed again")
        poll(lambda: running_pod(kubectl, name, SPOT_NODES), "the Job to run again")
        status = _status(kubectl, name)
        assert status["budget"]["enforcement"] == "None", status["budget"]
        assert status["cost"]["monthToDateUSD"] < 1, "the new month starts from zero"
        placement = status["placement"]
        assert placement["phase"] == "Running" and placement["attempts"] == 2, placement
        assert event_reasons(kubectl, name).count("BudgetSuspended") == 1
        assert event_reasons(kubectl, name).count("JobCreated") == 1


def _sandbox(kubectl: Any, name: str) -> None:
    pod_spec = {
        **pod_template(name)["spec"],
        "restartPolicy": "Always",
        "nodeSelector": {"gpufinops.dev/pool": ON_DEMAND.name},
    }
    deployment = deployment_manifest(name, NS, pod_spec)
    workload = {
        "apiVersion": "gpufinops.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"type": "Experiment", "costAllocation": {"team": "research"},
                 "nodePools": [ON_DEMAND.name], "budget": BUDGET,
                 "experiment": {"targetRef": {"kind": "Deployment", "name": name}}},
    }  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump_all([deployment, workload])))


def _replicas(kubectl: Any, name: str) -> int:
    return int(get(kubectl, "deployment", name)["spec"]["replicas"])


def test_an_experiment_is_scaled_to_zero_once_and_stays_up_when_woken_next_month(
    training_pools: None, cleanup: None, kubeconfig: Path, config_file: Path, kubectl: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    name = "notebook"
    ops = Operators(kubeconfig, config_file, tmp_path)
    _sandbox(kubectl, name)
    ok(kubectl("wait", "-n", NS, f"deployment/{name}",
               "--for=jsonpath={.status.readyReplicas}=1", "--timeout=60s"))  # fmt: skip
    ok(kubectl("wait", "-n", NS, f"aiw/{name}", "--for=create", "--timeout=30s"))
    set_cost(kubectl, NS, name, OVER, datetime.now(UTC))

    with ops.start() as first:
        poll(lambda: _replicas(kubectl, name) == 0, "the sandbox to be scaled to zero")
        sandbox = poll(lambda: _status(kubectl, name).get("sandbox", {}).get("shutDownAt")
                       and _status(kubectl, name)["sandbox"], "status.sandbox")  # fmt: skip
        assert sandbox["shutdownReason"] == "BudgetExceeded" and sandbox["replicasBefore"] == 1
        poll(lambda: "SandboxShutDown" in event_reasons(kubectl, name), "the SandboxShutDown Event")
        first.kill()

    # A month later, with no operator in between.
    set_cost(kubectl, NS, name, OVER, datetime.now(UTC) - timedelta(days=32))
    with ops.start():
        poll(lambda: _enforcement(kubectl, name) == "None", "the budget to reset")
        assert _replicas(kubectl, name) == 0, "a sandbox waits for its user to wake it"
        ok(kubectl("scale", "deployment", name, "-n", NS, "--replicas=1"))
        poll(lambda: "SandboxWoken" in event_reasons(kubectl, name), "the SandboxWoken Event")
        poll(lambda: _status(kubectl, name)["sandbox"].get("shutDownAt") is None,
             "the timers to restart")  # fmt: skip
        assert _status(kubectl, name)["sandbox"].get("shutdownReason") is None
        assert _replicas(kubectl, name) == 1
        assert event_reasons(kubectl, name).count("SandboxShutDown") == 1


def test_a_budget_suspension_cut_short_by_a_kill_is_recorded_and_reported_once(
    training_pools: None, cleanup: None, kubeconfig: Path, config_file: Path, kubectl: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    name = "cutshort"
    ops = Operators(kubeconfig, config_file, tmp_path)
    _placed_then_killed(ops, kubectl, name)
    # Killed after suspending the Job for the budget (which the cost loop had recorded
    # as Suspend), before recording or reporting the suspension.
    set_cost(kubectl, NS, name, OVER, datetime.now(UTC))
    budget = {"enforcement": "Suspend", "state": "Exceeded", "maxReplicas": 0}
    ok(kubectl("patch", "aiw", name, "-n", NS, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"budget": budget}})))  # fmt: skip
    ok(kubectl("patch", "job", name, "-n", NS, "--type=merge", "-p",
               json.dumps({"spec": {"suspend": True}})))  # fmt: skip
    with ops.start():
        poll(lambda: placement_of(kubectl, name).get("phase") == "Suspended", "phase Suspended")
        poll(lambda: "BudgetSuspended" in event_reasons(kubectl, name), "the BudgetSuspended Event")
        assert event_reasons(kubectl, name).count("BudgetSuspended") == 1
        assert _suspended(kubectl, name)
        assert placement_of(kubectl, name)["attempts"] == 1, "not placed again meanwhile"
