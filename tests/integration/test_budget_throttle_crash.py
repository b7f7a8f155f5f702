"""Budget Throttle on an Inference workload holds across a SIGKILL and lifts with the budget.

The cost loop writes ``status.budget.enforcement: Throttle`` once the month's
budget is spent; the autoscaler then keeps the replicas running but adds none.
The enforcement lives in status, so an operator killed after it was decided and
restarted while the queue explodes must still hold the Deployment where it is,
say why on every decision, and scale up as soon as the budget is raised.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.budget import set_cost
from tests.support.exporter import Exporter
from tests.support.inference import WORKLOAD, jsonpath, llm_deployment, llm_replicas, set_vllm
from tests.support.kube import ok
from tests.support.operator import RunningOperator, running_operator
from tests.support.polling import poll

NS = "bt-crash"
BUDGETED = WORKLOAD + "  budget: {monthlyUSD: 100, enforcement: Throttle}\n"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped defaults with the cost loop every second."""
    config = yaml.safe_load((ROOT / "operator/gpufinops/config/default.yaml").read_text())
    config.setdefault("cost", {})["intervalSeconds"] = 1
    path = tmp_path_factory.mktemp("throttle-config") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _operator(kubeconfig: Path, config: Path, prometheus: str, log_dir: Path) -> Any:
    log_dir.mkdir()
    return running_operator(
        kubeconfig, log_dir, "--config", str(config), "--namespace", NS,
        "--prometheus-url", prometheus, "--sync-seconds", "1",
    )  # fmt: skip


def _enforcement(kubectl: Any) -> str:
    return jsonpath(kubectl, NS, "aiw", "llm", ".status.budget.enforcement")


def _reason(kubectl: Any) -> str:
    return jsonpath(kubectl, NS, "aiw", "llm", ".status.lastDecision.reason")


def _ticks(op: RunningOperator) -> float:
    return op.metric("gpufinops_autoscaler_ticks_total", namespace=NS, workload="llm")


@pytest.fixture
def cleanup(
    kubectl: Any, kubeconfig: Path, config_file: Path, prometheus: str, tmp_path: Path
) -> Iterator[None]:
    yield
    # With an operator running, so that it releases the workload's finalizer.
    with _operator(kubeconfig, config_file, prometheus, tmp_path / "cleanup"):
        kubectl("delete", "aiw", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    kubectl("delete", "deployments", "--all", "-n", NS, "--wait=true", "--timeout=60s")


@pytest.mark.usefixtures("cleanup")
def test_a_throttle_holds_across_a_kill_and_lifts_with_the_budget(
    kubectl: Any,
    kubeconfig: Path,
    config_file: Path,
    prometheus: str,
    exporter: Exporter,
    tmp_path: Path,
) -> None:
    set_vllm(exporter, NS, waiting=0)
    kubectl("create", "namespace", NS)
    ok(kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(llm_deployment(NS))))
    ok(kubectl("apply", "-n", NS, "-f", "-", input=BUDGETED))
    # Running first as any workload does (accepted, ticking, its Deployment scaled by
    # the operator), so the budget runs out on a workload with an autoscaler's status.
    with _operator(kubeconfig, config_file, prometheus, tmp_path / "first") as first:
        poll(lambda: _ticks(first) > 0, "the first tick")
        first.kill()
    # The month's budget spent while no operator runs (the cost loop reads its totals
    # from status when it starts, and keeps them itself after that).
    set_cost(kubectl, NS, "llm", 150.0, datetime.now(UTC))
    with _operator(kubeconfig, config_file, prometheus, tmp_path / "second") as second:
        poll(lambda: _enforcement(kubectl) == "Throttle", "the budget's Throttle in status")
        second.kill()

    set_vllm(exporter, NS, waiting=2000)  # six replicas' worth and more
    with _operator(kubeconfig, config_file, prometheus, tmp_path / "third") as third:
        poll(lambda: "BudgetThrottle" in _reason(kubectl), "a decision held by the budget")
        held_from = _ticks(third)
        poll(lambda: _ticks(third) >= held_from + 5, "five more ticks on the exploding queue")
        assert llm_replicas(kubectl, NS) == 1
        assert _enforcement(kubectl) == "Throttle"
        assert jsonpath(kubectl, NS, "aiw", "llm", ".status.replicas.desired") == "1"

        patch = {"spec": {"budget": {"monthlyUSD": 1000}}}
        ok(kubectl("patch", "aiw", "llm", "-n", NS, "--type=merge", "-p", json.dumps(patch)))
        poll(lambda: _enforcement(kubectl) == "None", "the Throttle lifted by the larger budget")
        poll(lambda: llm_replicas(kubectl, NS) == 6, "the scale-up the budget held back")
