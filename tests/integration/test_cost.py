"""Spend accrues into status.cost on a real control plane, survives an operator restart
without double counting or losing time, and budget alerts fire once each; rightsizing
recommendations in status survive an operator that has not yet observed enough to
replace them, and the report shows them.

An Inference AIWorkload targets a Deployment whose two pods hold one GPU each on the
KWOK pool `l4-on-demand`. The test config prices that pool at $1 per GPU-second, so
every second of GPU time is visible in dollars rounded to cents. The workload is in
Recommend mode: the autoscaler (no Prometheus here) must not change the replicas the
expected spend is computed from. Every wait polls an observable condition."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from tests.support.focus import validate
from tests.support.kube import ok
from tests.support.operator import running_operator
from tests.support.polling import poll

from gpufinops.cli.report import build_report, render_focus

NS = "cost-test"
POOL = "l4-on-demand"
GPU_USD_PER_SECOND = 1.0
INTERVAL = 2
DAILY_BUDGET = 60.0
"""Two GPUs at $1/s: 50 % after ~15 s, 80 % after ~24 s, exceeded after ~30 s."""
DEFAULT_POOLS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "operator/gpufinops/config/default.yaml").read_text()
)["nodePools"]
CONFIG = {
    "cost": {"timezone": "UTC", "intervalSeconds": INTERVAL},
    "nodePools": [
        {**p, "gpusPerNode": 4, "hourlyPriceUSD": 4 * 3600 * GPU_USD_PER_SECOND}
        if p["name"] == POOL
        else p
        for p in DEFAULT_POOLS
    ],
}

MANIFESTS = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: llm, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: llm}}}}
  template:
    metadata: {{labels: {{app: llm}}}}
    spec:
      nodeSelector: {{gpufinops.dev/pool: {POOL}}}
      tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
      containers:
        - name: vllm
          image: vllm/vllm-openai:v0.11.0
          resources: {{limits: {{nvidia.com/gpu: 1}}}}
---
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {{name: llm, namespace: {NS}}}
spec:
  type: Inference
  mode: Recommend
  costAllocation: {{team: search, project: ranking, model: llama-3-8b}}
  inference:
    targetRef: {{name: llm}}
    minReplicas: 1
    maxReplicas: 4
  budget:
    dailyUSD: {DAILY_BUDGET}
    enforcement: Throttle
"""


def _status(kubectl) -> dict:
    got = kubectl("get", "aiw", "llm", "-n", NS, "-o", "json")
    return json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}


def _time(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def _last_accounted(kubectl) -> datetime | None:
    raw = (_status(kubectl).get("cost") or {}).get("lastAccountedTime")
    return _time(raw) if raw else None


def _pod_starts(kubectl) -> list[datetime]:
    pods = json.loads(ok(kubectl("get", "pods", "-n", NS, "-l", "app=llm", "-o", "json")))
    starts = []
    for pod in pods["items"]:
        running = [
            _time(cs["state"]["running"]["startedAt"])
            for cs in pod["status"].get("containerStatuses") or []
            if "running" in (cs.get("state") or {})
        ]
        if running:  # a pod still starting has no start to count yet
            starts.append(min(running))
    return starts


def _expected_usd(starts: list[datetime], until: datetime) -> float:
    return sum((until - s).total_seconds() for s in starts) * GPU_USD_PER_SECOND


def _budget_events(kubectl) -> dict[str, int]:
    got = kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.kind=AIWorkload",
                  "-o", "json")  # fmt: skip
    counts: dict[str, int] = {}
    for e in json.loads(ok(got))["items"]:
        if e["reason"].startswith("Budget"):
            counts[e["reason"]] = counts.get(e["reason"], 0) + int(e.get("count") or 1)
    return counts


def _check_spend(kubectl, starts: list[datetime]) -> None:
    cost = _status(kubectl)["cost"]
    expected = _expected_usd(starts, _time(cost["lastAccountedTime"]))
    # Both sides use the same container start times, so they differ only by rounding
    # to cents in status (0.005), float error, and the pod's startTime standing in for
    # the container start (whole seconds) should one pass have seen the pod before
    # its container status: at most 1 s per pod, $2 here. A double-counted interval
    # or the 5 s the operator is down lost would be $4 or more, beyond this bound.
    assert cost["todayUSD"] == pytest.approx(expected, abs=2 * GPU_USD_PER_SECOND + 0.01)
    assert cost["hourlyUSD"] == pytest.approx(2 * GPU_USD_PER_SECOND * 3600)


@pytest.fixture(scope="module")
def workload(kubectl) -> Iterator[None]:
    kubectl("create", "namespace", NS)
    ok(kubectl("apply", "-f", "-", input=MANIFESTS))
    yield
    # The operator is stopped by now: drop Kopf's finalizer, or deletion would wait for it.
    kubectl("patch", "aiw", "llm", "-n", NS, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    kubectl("delete", "aiw,deployments", "--all", "-n", NS, "--wait=true", "--timeout=60s")
    # With its Events: a second run on the same cluster counts only its own.
    kubectl("delete", "namespace", NS, "--wait=true", "--timeout=90s")


def test_spend_accrues_survives_a_restart_and_alerts_once(
    kubeconfig: Path, kubectl, workload, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    poll(lambda: len(_pod_starts(kubectl)) == 2, "two running GPU pods", deadline=120)
    starts = _pod_starts(kubectl)

    (tmp_path / "first").mkdir()
    with running_operator(kubeconfig, tmp_path / "first", "--config", str(config)) as op:
        poll(lambda: (_status(kubectl).get("cost") or {}).get("todayUSD"), "status.cost")
        _check_spend(kubectl, starts)
        # What rightsizing observes is kept in status (the API server takes the schema).
        poll(lambda: _status(kubectl).get("observedUsage"), "status.observedUsage", deadline=30)
        observed = _status(kubectl)["observedUsage"]
        assert len(observed["observedHours"]) == 24 and observed["observedSince"]
        poll(lambda: (_status(kubectl).get("budget") or {}).get("state") == "Exceeded",
             "the daily budget exceeded", deadline=90)  # fmt: skip
        _check_spend(kubectl, starts)
        budget = _status(kubectl)["budget"]
        assert budget["enforcement"] == "Throttle" and budget["maxReplicas"] == 2
        day = datetime.now(UTC).date().isoformat()
        assert {f"day:{day}:0.5", f"day:{day}:0.8", f"day:{day}:exceeded"} <= set(
            budget["alertsSent"]
        )
        labels = {"namespace": NS, "workload": "llm", "team": "search"}
        poll(
            lambda: op.metric("gpufinops_cost_usd_total", **labels) > 0, "cost metric", deadline=10
        )
        assert op.metric("gpufinops_budget_used_ratio", **labels) >= 1.0
        assert op.metric("gpufinops_hourly_cost_usd", **labels, capacity_type="on-demand") == (
            pytest.approx(7200.0)
        )
        # Two of the pool's four GPUs are held: the other two are charged to nobody.
        poll(lambda: op.metric("gpufinops_unallocated_gpu_cost_usd_total", pool=POOL) > 0,
             "unallocated GPU cost", deadline=10)  # fmt: skip
    stopped = _last_accounted(kubectl)
    assert stopped is not None
    # Leave the operator down a while: spend in the gap must be charged after the
    # restart, once, from lastAccountedTime on.
    poll(lambda: (datetime.now(UTC) - stopped).total_seconds() >= 5, "5 s of downtime", deadline=30)

    # Recommendations a previous operator wrote: the API server accepts them, and an
    # operator that has not yet observed a day must leave them as they are.
    advice = [{"kind": "FewerReplicas", "message": "GPUs peaked at 12%",
               "estimatedMonthlySavingUSD": 1234.5}]  # fmt: skip
    ok(kubectl("patch", "aiw", "llm", "-n", NS, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"recommendations": advice}})))  # fmt: skip

    (tmp_path / "second").mkdir()
    with running_operator(kubeconfig, tmp_path / "second", "--config", str(config)):
        poll(lambda: (_last_accounted(kubectl) or stopped) > stopped, "a pass after restart")
        _check_spend(kubectl, starts)
        after_restart = _last_accounted(kubectl)
        assert after_restart is not None
        poll(lambda: (_last_accounted(kubectl) or after_restart).timestamp()
             >= after_restart.timestamp() + 2 * INTERVAL, "two more passes",
             deadline=30)  # fmt: skip
        _check_spend(kubectl, starts)
        poll(lambda: _budget_events(kubectl).get("BudgetExceeded"), "Events posted", deadline=30)
        assert _budget_events(kubectl) == {"BudgetThresholdCrossed": 2, "BudgetExceeded": 1}
        assert _status(kubectl)["recommendations"] == advice

    # `gpufinops report` reads the same figures back from the cluster.
    got = subprocess.run(
        [sys.executable, "-m", "gpufinops", "report", "-n", NS, "--format", "json"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert [t["name"] for t in report["by_team"]] == ["search"]
    assert report["workloads"][0]["budget_state"] == "Exceeded"
    assert report["workloads"][0]["today_usd"] == _status(kubectl)["cost"]["todayUSD"]
    assert report["workloads"][0]["recommendations"] == [
        {"kind": "FewerReplicas", "message": "GPUs peaked at 12%",
         "estimated_monthly_saving_usd": 1234.5}
    ]  # fmt: skip
    assert report["workloads"][0]["potential_monthly_saving_usd"] == 1234.5

    # The day's spend by capacity type, as the FOCUS export reads it: today's charge
    # is the day's total, at the pool's price per GPU-hour; exported once the day has
    # ended, it passes focus-validator.
    cost = _status(kubectl)["cost"]
    today = [d for d in cost["daily"] if d["date"] == datetime.now(UTC).date().isoformat()]
    assert [d["capacityType"] for d in today] == ["on-demand"]
    assert today[0]["costUSD"] == pytest.approx(cost["todayUSD"], abs=0.01)
    assert today[0]["gpuHours"] == pytest.approx(
        today[0]["costUSD"] / (3600 * GPU_USD_PER_SECOND), rel=1e-6
    )
    objects = json.loads(ok(kubectl("get", "aiw", "-n", NS, "-o", "json")))["items"]
    tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0) + timedelta(days=1, seconds=1)
    export = tmp_path / "focus.csv"
    export.write_text(render_focus(build_report(objects, tomorrow, "UTC")))
    rows = export.read_text().splitlines()[1:]
    assert len(rows) == 1 and f"aiworkloads.gpufinops.dev/{NS}/llm" in rows[0]
    got = validate(export)
    assert got.returncode == 0 and "Validation succeeded" in got.stdout, got.stdout
