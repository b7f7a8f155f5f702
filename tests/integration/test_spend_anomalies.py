"""Spend anomalies on the real control plane: judged from status, raised once, reported.

The previous operator process recorded a week of the chat workload's hours in
``status.spendHistory`` ($4 an hour at 2 replicas) and, last hour, a runaway at 8
replicas ($16), then stopped before judging it: the group memory in the ledger
namespace says it judged up to the hour before. The operator started here must
judge the missed hour at once, post one ``SpendAnomaly`` Event on the workload,
send one alert to a real Alertmanager with scope, team and model labels, remember
the hour, and raise nothing again. The embed workload has no history: the hours the
operator writes for it must pass the CRD's schema. ``gpufinops report`` then lists
the anomaly from the objects alone.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.alertmanager import AlertmanagerServer
from tests.support.operator import running_operator
from tests.support.polling import poll

from gpufinops.core.cost.anomaly import (
    HOUR_SECONDS,
    Interval,
    epoch_hour,
    hour_label,
    parse_hour,
    record,
    to_status,
)

NS = "anomaly-test"
POOL = "a100-on-demand"
INTERVAL = 1
GROUP_MEMORY = "gpufinops-group-budgets"
DEFAULT_POOLS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "operator/gpufinops/config/default.yaml").read_text()
)["nodePools"]


def _workload(name: str, model: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{gpufinops.dev/pool: {POOL}}}
      tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
      containers:
        - name: server
          image: vllm/vllm-openai:latest
          resources: {{limits: {{nvidia.com/gpu: 1}}}}
---
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {{name: {name}, namespace: {NS}}}
spec:
  type: Experiment
  mode: Recommend
  costAllocation: {{team: search, model: {model}}}
  experiment:
    targetRef: {{kind: Deployment, name: {name}}}
"""


def _previous_week(missed: int) -> dict[str, Any]:
    """What the previous process wrote: a week of usual hours, then the runaway hour."""
    kept: tuple[Any, ...] = ()
    for hour in range(missed - 7 * 24, missed + 1):
        start = datetime.fromtimestamp(hour * HOUR_SECONDS, UTC)
        replicas = 8 if hour == missed else 2
        kept = record(kept, Interval(start, start + timedelta(hours=1),
                                     {POOL: 2.0 * replicas}, replicas, replicas))  # fmt: skip
    until = datetime.fromtimestamp((missed + 1) * HOUR_SECONDS, UTC)
    return to_status(kept, until).to_wire()


@pytest.fixture(scope="module")
def workloads(kubectl) -> Iterator[int]:
    """The missed hour (the last that ended), with status and memory as left behind."""
    # The hour before the pods exist: no spend of theirs can land in it.
    missed = epoch_hour(datetime.now(UTC)) - 1
    kubectl("create", "namespace", NS)
    applied = kubectl("apply", "-f", "-", input=_workload("chat", "llama") + "---"
                      + _workload("embed", "e5"))  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    history = json.dumps({"status": {"spendHistory": _previous_week(missed)}})
    patched = kubectl("patch", "aiw", "chat", "-n", NS, "--subresource=status",
                      "--type=merge", "-p", history)  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    memory = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": GROUP_MEMORY, "namespace": NS},
              "data": {"anomaly.judged": json.dumps([hour_label(missed - 1)])}}  # fmt: skip
    created = kubectl("apply", "-f", "-", input=json.dumps(memory))
    assert created.returncode == 0, created.stderr
    yield missed
    kubectl("patch", "aiw", "chat", "embed", "-n", NS, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    kubectl("delete", "aiw,deployments,configmaps", "--all", "-n", NS, "--wait=true",
            "--timeout=60s")  # fmt: skip


def _events(kubectl) -> list[dict[str, Any]]:
    """This chat's SpendAnomaly Events (Events outlive the objects of earlier runs)."""
    uid = kubectl("get", "aiw", "chat", "-n", NS, "-o", "jsonpath={.metadata.uid}").stdout
    selector = f"reason=SpendAnomaly,involvedObject.uid={uid}"
    got = kubectl("get", "events", "-n", NS, "--field-selector", selector, "-o", "json")
    return json.loads(got.stdout)["items"] if got.returncode == 0 and uid else []


def _status(kubectl, name: str) -> dict[str, Any]:
    got = kubectl("get", "aiw", name, "-n", NS, "-o", "json")
    return json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}


def _judged(kubectl) -> list[str]:
    got = kubectl("get", "configmap", GROUP_MEMORY, "-n", NS, "-o", "json")
    data = json.loads(got.stdout).get("data") or {} if got.returncode == 0 else {}
    return list(json.loads(data.get("anomaly.judged", "[]")))


def _accounted(kubectl) -> float:
    raw = (_status(kubectl, "embed").get("cost") or {}).get("lastAccountedTime")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() if raw else 0.0


def test_a_missed_hours_runaway_is_raised_once_with_its_explanation(
    kubeconfig: Path,
    kubectl,
    workloads: int,
    alertmanager: AlertmanagerServer,
    tmp_path: Path,
) -> None:
    missed = workloads
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "cost": {"timezone": "UTC", "intervalSeconds": INTERVAL, "ledgerNamespace": NS},
        "alerting": {"alertmanagerURL": alertmanager.url},
        "nodePools": DEFAULT_POOLS,
    }))  # fmt: skip
    before = alertmanager.received()

    def raised() -> list[dict[str, Any]]:
        return alertmanager.alerts(alertname="SpendAnomaly", namespace=NS)

    with running_operator(kubeconfig, tmp_path, "--config", str(config), "-n", NS) as op:
        poll(lambda: len(raised()) == 1, "the SpendAnomaly alert in Alertmanager", deadline=60)
        poll(lambda: len(_events(kubectl)) == 1, "the SpendAnomaly Event", deadline=30)
        poll(lambda: [parse_hour(h) >= missed for h in _judged(kubectl)] == [True],
             "the hour judged remembered", deadline=30)  # fmt: skip
        # The operator's own hours for embed pass the CRD schema (a refused patch writes
        # nothing at all).
        poll(lambda: "firstHour" in (_status(kubectl, "embed").get("spendHistory") or {}),
             "embed's spend history", deadline=30)  # fmt: skip
        seen = _accounted(kubectl)
        poll(lambda: _accounted(kubectl) >= seen + 2 * INTERVAL, "two more passes", deadline=30)
        assert op.metric("gpufinops_spend_anomalies_total", scope="workload") == 1

    (alert,) = raised()
    labels = alert["labels"]
    assert {k: labels[k] for k in ("scope", "workload", "team", "model", "hour", "severity")} == {
        "scope": "workload", "workload": "chat", "team": "search", "model": "llama",
        "hour": hour_label(missed), "severity": "warning",
    }  # fmt: skip
    expected = (
        f"workload {NS}/chat spent $16.00 in the hour from {hour_label(missed)}, usually "
        f"$4.00 (+$12.00, 4.0x). ReplicasWithoutDemand, 8 replicas (usually 2), on {POOL} "
        "+$12.00"
    )
    assert alert["annotations"]["summary"] == expected
    (event,) = _events(kubectl)
    assert event["type"] == "Warning" and event["message"] == expected
    assert event["involvedObject"]["name"] == "chat"
    # One runaway, one alert: not its team's and model's too, and never again.
    assert alertmanager.received() - before == 1
    history = _status(kubectl, "chat")["spendHistory"]
    # Kept as it was (a rewrite at an hour's end re-records only what came after it).
    assert history["usd"][missed - parse_hour(history["firstHour"])] == pytest.approx(16.0)

    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    report = subprocess.run(
        [sys.executable, "-m", "gpufinops", "report", "-n", NS, "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    (listed,) = json.loads(report.stdout)["anomalies"]
    assert (listed["hour"], listed["scope"], listed["group"]) == (
        hour_label(missed),
        "workload",
        f"{NS}/chat",
    )
    assert listed["message"] == expected
