"""Budget alerts reach a real Alertmanager and a webhook, once per threshold.

An Experiment AIWorkload targets a Deployment whose one pod holds one GPU on the
KWOK pool `a100-on-demand`, priced at $1 per GPU-second, under a $10 daily budget
with the default thresholds: 50 % after ~5 s, 80 % after ~8 s, exceeded after
~10 s. The operator watches only this test's namespace, so alerts of workloads
left by other tests cannot arrive. Every wait polls an observable condition.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from tests.support.alertmanager import AlertmanagerServer, WebhookReceiver
from tests.support.operator import running_operator
from tests.support.polling import poll

NS = "alerts-test"
POOL = "a100-on-demand"
INTERVAL = 1
DAILY_BUDGET = 10.0
DEFAULT_POOLS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "operator/gpufinops/config/default.yaml").read_text()
)["nodePools"]

MANIFESTS = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: notebook, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: notebook}}}}
  template:
    metadata: {{labels: {{app: notebook}}}}
    spec:
      nodeSelector: {{gpufinops.dev/pool: {POOL}}}
      tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
      containers:
        - name: jupyter
          image: jupyter/base-notebook:latest
          resources: {{limits: {{nvidia.com/gpu: 1}}}}
---
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {{name: notebook, namespace: {NS}}}
spec:
  type: Experiment
  mode: Recommend
  costAllocation: {{team: research, project: tiny, environment: dev}}
  experiment:
    targetRef: {{kind: Deployment, name: notebook}}
  budget:
    dailyUSD: {DAILY_BUDGET}
    enforcement: Alert
"""


def _status(kubectl) -> dict:
    got = kubectl("get", "aiw", "notebook", "-n", NS, "-o", "json")
    return json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}


def _last_accounted(kubectl) -> float:
    raw = (_status(kubectl).get("cost") or {}).get("lastAccountedTime")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() if raw else 0.0


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def workload(kubectl) -> Iterator[None]:
    kubectl("create", "namespace", NS)
    applied = kubectl("apply", "-f", "-", input=MANIFESTS)
    assert applied.returncode == 0, applied.stderr
    yield
    # The operator is stopped by now: drop Kopf's finalizer, or deletion would wait for it.
    kubectl("patch", "aiw", "notebook", "-n", NS, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    kubectl("delete", "aiw,deployments", "--all", "-n", NS, "--wait=true", "--timeout=60s")


def _config(alertmanager: AlertmanagerServer, webhook: WebhookReceiver) -> dict:
    return {
        "cost": {"timezone": "UTC", "intervalSeconds": INTERVAL},
        "alerting": {"alertmanagerURL": alertmanager.url, "webhookURL": webhook.url},
        "nodePools": [
            {**p, "gpusPerNode": 8, "hourlyPriceUSD": 8 * 3600.0} if p["name"] == POOL else p
            for p in DEFAULT_POOLS
        ],
    }


def test_budget_alerts_reach_alertmanager_and_the_webhook_once_each(
    kubeconfig: Path,
    kubectl,
    workload,
    alertmanager: AlertmanagerServer,
    webhook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(alertmanager, webhook)))
    day = datetime.now(UTC).date().isoformat()
    expected = {  # (alertname, threshold) of each alert the day's spend raises
        ("BudgetThresholdCrossed", "0.5"),
        ("BudgetThresholdCrossed", "0.8"),
        ("BudgetExceeded", "1"),
    }

    def arrived() -> set[tuple[str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("threshold", ""))
            for a in alertmanager.alerts(namespace=NS, workload="notebook")
        }

    with running_operator(kubeconfig, tmp_path, "--config", str(config), "-n", NS):
        poll(
            lambda: arrived() == expected,
            f"alerts {sorted(expected)} in Alertmanager",
            deadline=120,
        )
        # Two more passes over an exceeded budget must not raise anything again.
        seen = _last_accounted(kubectl)
        poll(
            lambda: _last_accounted(kubectl) >= seen + 2 * INTERVAL, "two more passes", deadline=30
        )
        poll(lambda: len(webhook.bodies) >= len(expected), "the webhook deliveries", deadline=10)

    alerts = alertmanager.alerts(namespace=NS, workload="notebook")
    assert len(alerts) == len(expected)
    for alert in alerts:
        labels = alert["labels"]
        assert labels["namespace"] == NS and labels["workload"] == "notebook"
        assert labels["team"] == "research" and labels["project"] == "tiny"
        assert labels["environment"] == "dev" and labels["source"] == "gpufinops"
        assert labels["period"] == "day" and labels["period_id"] == day
        assert labels["severity"] == (
            "info" if labels["alertname"] == "BudgetThresholdCrossed" else "warning"
        )
        assert alert["annotations"]["key"].startswith(f"day:{day}:")
        assert alert["status"]["state"] == "active"
    # Equal label sets merge in Alertmanager, so count what it received: once each.
    assert alertmanager.received() == len(expected)

    assert sorted((b["reason"], b.get("threshold", "")) for b in webhook.bodies) == sorted(expected)
    for body in webhook.bodies:
        assert body["namespace"] == NS and body["workload"] == "notebook"
        assert body["labels"] == {"team": "research", "project": "tiny", "environment": "dev"}
        assert body["key"].startswith(f"day:{day}:") and body["message"]


def test_a_team_budget_alerts_alertmanager_with_the_team_label_once(
    kubeconfig: Path,
    kubectl,
    workload,
    alertmanager: AlertmanagerServer,
    webhook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    # The admin's budget for the whole team (the operator config), far below what the
    # notebook has spent today by now: each threshold's alert at once, and once only.
    config = _config(alertmanager, webhook)
    config["budgets"] = {"teams": {"research": {"dailyUSD": 1.0}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    day = datetime.now(UTC).date().isoformat()
    expected = {("BudgetThresholdCrossed", "0.5"), ("BudgetThresholdCrossed", "0.8"),
                ("BudgetExceeded", "1")}  # fmt: skip

    def arrived() -> list[dict]:
        return alertmanager.alerts(scope="team", team="research")

    before = alertmanager.received()
    with running_operator(kubeconfig, tmp_path, "--config", str(path), "-n", NS) as op:
        poll(lambda: len(arrived()) == len(expected), "the team's alerts", deadline=60)
        ratio = "gpufinops_group_budget_used_ratio"
        poll(lambda: op.metric(ratio, scope="team", group="research") > 1, "the team's ratio",
             deadline=10)  # fmt: skip
        seen = _last_accounted(kubectl)
        poll(lambda: _last_accounted(kubectl) >= seen + 2 * INTERVAL, "two more passes",
             deadline=30)  # fmt: skip
    alerts = arrived()
    assert {(a["labels"]["alertname"], a["labels"].get("threshold", "")) for a in alerts} == (
        expected
    )
    for alert in alerts:
        labels = alert["labels"]
        # Routed by team; about no single workload or namespace.
        assert "workload" not in labels and "namespace" not in labels
        assert labels["period"] == "day" and labels["period_id"] == day
        assert alert["annotations"]["summary"].startswith("team research: ")
    # The workload's own alerts were raised by the first operator; none came again, and
    # the team's came once each.
    assert alertmanager.received() - before == len(expected)
