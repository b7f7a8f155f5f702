"""Spend a tenant cannot reset: the month's ledger in the operator's namespace, on the real
control plane with `gpufinops run` as a process (no admission policy installed).

A Training workload on the user's own Job (``jobRef``) is over its monthly budget
and suspended. Its author deletes the AIWorkload and creates it again, with an
empty status: the spend continues from the ledger, the budget still says Suspend
and the Job stays suspended. Writing a lower spend into status changes nothing
either: the ledger, not status, is the record.

The spend is put over the budget the way an admin would correct it: in the ledger
ConfigMap (and in status too, so that without a ledger this test would see the
reset it guards against).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.budget import iso, set_cost
from tests.support.kube import KubectlRun, ok
from tests.support.operator import RunningOperator
from tests.support.polling import poll, poll_until
from tests.support.training import (
    CONFIG,
    NS,
    SPOT_NODES,
    event_reasons,
    get,
    pod_template,
    running_pod,
    start_operator,
    workload_manifest,
)

pytestmark = pytest.mark.usefixtures("training_state_on_timeout")

LEDGER_NS = "gpufinops-ledger-it"
BUDGET = {"monthlyUSD": 100, "enforcement": "Suspend"}
OVER = 150.0
NAME = "byref"
JOB = "mine"


@pytest.fixture(scope="module")
def ledger_namespace(kubectl: KubectlRun) -> Iterator[str]:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEDGER_NS}}
    ok(kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    try:
        yield LEDGER_NS
    finally:
        kubectl("delete", "namespace", LEDGER_NS, "--wait=true", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(
    training_pools: None,
    ledger_namespace: str,
    kubeconfig: Path,
    kubectl: KubectlRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningOperator]:
    root = tmp_path_factory.mktemp("spend-ledger")
    config = {**CONFIG, "cost": {"intervalSeconds": 1, "ledgerNamespace": ledger_namespace}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    with start_operator(kubeconfig, root / "config.yaml", root) as op:
        try:
            yield op
        finally:
            kubectl("delete", "aiw", NAME, "-n", NS, "--wait=true", "--timeout=60s")
            kubectl("delete", "job", JOB, "-n", NS, "--wait=true", "--timeout=60s")


def _ledger(kubectl: KubectlRun) -> dict[str, Any]:
    """The ledger entry of the workload, empty until there is one."""
    got = kubectl("get", "configmap", f"gpufinops-ledger-{NS}", "-n", LEDGER_NS, "-o", "json")
    if got.returncode != 0:
        return {}
    data = json.loads(got.stdout).get("data") or {}
    return dict(json.loads(data[NAME])) if NAME in data else {}


def _set_ledger(kubectl: KubectlRun, spent: float, accounted: datetime) -> None:
    entry = {"todayUSD": spent, "monthToDateUSD": spent, "hourlyUSD": 0.0,
             "lastAccountedTime": accounted.isoformat(), "alertsSent": []}  # fmt: skip
    patch = {"data": {NAME: json.dumps(entry)}}
    ok(kubectl("patch", "configmap", f"gpufinops-ledger-{NS}", "-n", LEDGER_NS,
               "--type=merge", "-p", json.dumps(patch)))  # fmt: skip


def _status(kubectl: KubectlRun) -> dict[str, Any]:
    return dict(get(kubectl, "aiw", NAME).get("status") or {})


def _month(kubectl: KubectlRun) -> float:
    return float((_status(kubectl).get("cost") or {}).get("monthToDateUSD") or 0.0)


def _suspended(kubectl: KubectlRun) -> bool:
    return bool(get(kubectl, "job", JOB)["spec"].get("suspend"))


def _workload() -> str:
    manifest = yaml.safe_load(workload_manifest(NAME, {"jobRef": {"name": JOB}}))
    manifest["spec"]["budget"] = BUDGET
    return yaml.safe_dump(manifest)


def test_deleting_and_creating_a_workload_again_does_not_reset_its_spend(
    operator: RunningOperator, kubectl: KubectlRun
) -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": JOB, "namespace": NS},
        "spec": {"suspend": True, "template": pod_template(JOB)},
    }  # fmt: skip
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(job)))
    ok(kubectl("apply", "-f", "-", input=_workload()))
    poll(lambda: running_pod(kubectl, JOB, SPOT_NODES), "the user's Job running on spot")
    poll(lambda: _ledger(kubectl).get("lastAccountedTime"), "the workload's ledger entry")

    # The month's spend goes over the budget (as recorded by an admin's correction).
    now = datetime.now(UTC)
    _set_ledger(kubectl, OVER, now)
    set_cost(kubectl, NS, NAME, OVER, now)
    poll(lambda: (_status(kubectl).get("budget") or {}).get("enforcement") == "Suspend",
         "the budget to say Suspend")  # fmt: skip
    poll(lambda: _suspended(kubectl), "the Job to be suspended")
    assert "BudgetSuspended" in event_reasons(kubectl, NAME)

    # A lower spend written into status is shown over, not believed.
    set_cost(kubectl, NS, NAME, 0.0, datetime.now(UTC))
    poll(lambda: _month(kubectl) >= OVER, "status.cost rewritten from the ledger")

    # Deleted and created again: an empty status, the same month's ledger.
    ok(kubectl("delete", "aiw", NAME, "-n", NS, "--wait=true", "--timeout=60s"))
    assert _ledger(kubectl)["monthToDateUSD"] >= OVER  # outlives its workload
    ok(kubectl("apply", "-f", "-", input=_workload()))
    month = poll_until(lambda: _month(kubectl), lambda m: m > 0, "the new object's spend")
    assert month >= OVER, f"spend restarted at ${month:.2f} after delete and create"
    poll(lambda: (_status(kubectl).get("budget") or {}).get("enforcement") == "Suspend",
         "the re-created workload's budget saying Suspend")  # fmt: skip
    accounted = datetime.now(UTC)
    poll(lambda: _ledger(kubectl)["lastAccountedTime"] > iso(accounted)[:19],
         "more passes of the cost loop")  # fmt: skip
    assert _suspended(kubectl), "the Job was resumed by a re-created workload"
    assert running_pod(kubectl, JOB, SPOT_NODES) is None
