"""Spend anomalies through the cost pass: the hours it records and keeps in status, the
hour it judges once, the Event and the alert (the controller the operator runs)."""

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from tests.unit.test_cost_allocations import CONFIG, POOLS, SPEC, T0, Cluster, gpu_pod_record, pod
from tests.unit.test_cost_ledger import MemoryLedger

from gpufinops.adapters.alerts import alertmanager_payload
from gpufinops.adapters.allocations import gpu_pod
from gpufinops.api.status import SpendHistory
from gpufinops.controllers.cost import CostAccountant, WorkloadView
from gpufinops.core.cost.anomaly import Interval, from_status, hour_label, record, to_status
from gpufinops.core.events import EventReason


class GroupLedger(MemoryLedger):
    """The ledger with the group memory (``gpufinops-group-budgets``)."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, tuple[str, ...]] = {}

    def read_groups(self) -> Mapping[str, tuple[str, ...]]:
        return dict(self.groups)

    def write_groups(self, sent: Mapping[str, tuple[str, ...]]) -> None:
        self.groups = dict(sent)


def _usual_week() -> dict[str, Any]:
    """What a previous process wrote: a week at 2 replicas of one L4 GPU ($4/h)."""
    kept: tuple[Any, ...] = ()
    for h in range(7 * 24):
        start = T0 - timedelta(days=7) + timedelta(hours=h)
        kept = record(kept, Interval(start, start + timedelta(hours=1), {"l4": 4.0}, 2.0, 2, 2))
    return to_status(kept).to_wire()


EIGHT = [gpu_pod(gpu_pod_record(pod(n))) for n in "abcdefgh"]  # type: ignore[arg-type]
"""Eight 1-GPU pods on l4 from T0: $16 an hour, where the week spent $4."""


def _view(cluster: Cluster) -> WorkloadView:
    s = cluster.status
    return WorkloadView(
        "ml", "chat", {"kind": "AIWorkload", "metadata": {"name": "chat"}}, SPEC,
        s.get("cost") or {}, s.get("budget") or {}, s.get("recommendations"),
        s.get("observedUsage"), s.get("spendHistory"), desired_replicas=2,
    )  # fmt: skip


def _pass(acct: CostAccountant, cluster: Cluster, minutes: int) -> None:
    at = T0 + timedelta(minutes=minutes)
    asyncio.run(acct.tick(at, [_view(cluster)], EIGHT, POOLS, lambda ns, n: 8))


def _anomalies(cluster: Cluster) -> list[tuple[str, str]]:
    return [e for e in cluster.events if e[1] == EventReason.SPEND_ANOMALY]


def test_a_runaway_is_raised_once_when_its_hour_ends_and_not_again_after_a_restart() -> None:
    cluster, ledger = Cluster(), GroupLedger()
    cluster.status = {"spendHistory": _usual_week()}
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    for minutes in (20, 40):
        _pass(acct, cluster, minutes)
    assert _anomalies(cluster) == []  # the hour has not ended
    _pass(acct, cluster, 60)
    assert _anomalies(cluster) == [("Warning", EventReason.SPEND_ANOMALY)]
    (alert,) = [a for a in cluster.sent if a.reason == "SpendAnomaly"]
    assert alert.message == (
        "workload ml/chat spent $16.00 in the hour from 2026-11-27T10:00Z, usually $4.00 "
        "(+$12.00, 4.0x). ReplicasWithoutDemand, 8 replicas (usually 2; the autoscaler "
        "wanted 2), on l4 +$12.00"
    )
    (payload,) = alertmanager_payload([alert])
    assert payload["labels"] == {
        "alertname": "SpendAnomaly", "namespace": "ml", "workload": "chat",
        "severity": "warning", "source": "gpufinops", "hour": "2026-11-27T10:00Z",
        "scope": "workload", "team": "search", "model": "llama",
    }  # fmt: skip
    assert ledger.groups["anomaly/judged"] == (hour_label(_hour(10)),)
    _pass(acct, cluster, 70)
    # The runaway goes on: the next hour is anomalous too, but the anomaly started before.
    _pass(acct, cluster, 120)
    assert len(_anomalies(cluster)) == 1
    # A restart judges from the hour remembered: nothing raised again.
    again = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    _pass(again, cluster, 125)
    _pass(again, cluster, 180)
    assert len(_anomalies(cluster)) == 1


def _hour(hour_of_t0_day: int) -> int:
    from gpufinops.core.cost.anomaly import epoch_hour

    return epoch_hour(T0.replace(hour=hour_of_t0_day))


def test_the_hours_are_kept_in_status_and_read_back_by_a_restarted_operator() -> None:
    cluster = Cluster()
    cluster.status = {"spendHistory": _usual_week()}
    acct = CostAccountant(CONFIG, cluster.effects())
    _pass(acct, cluster, 10)  # status as read: not rewritten at once
    assert cluster.status["spendHistory"] == _usual_week()
    _pass(acct, cluster, 30)  # 15 minutes on: the hour in progress is written
    kept = from_status(SpendHistory.model_validate(cluster.status["spendHistory"]))
    assert len(kept) == 7 * 24 + 1
    now = kept[-1]
    assert (now.usd, now.gpu_hours, now.replicas, now.desired) == (8, 4, 8, 2)
    assert now.observed_hours == 0.5
    assert now.pools == (("l4", 8),)
    # A new process, no group memory: it does not judge the hour that ended before it
    # started (it cannot tell whether its predecessor did), but every hour after it.
    restarted = CostAccountant(CONFIG, cluster.effects())
    _pass(restarted, cluster, 40)
    _pass(restarted, cluster, 61)
    assert _anomalies(cluster) == [("Warning", EventReason.SPEND_ANOMALY)]


def test_a_pool_no_longer_among_the_largest_is_removed_from_status() -> None:
    cluster = Cluster()
    stale = _usual_week()
    stale["usdByPool"] = {**stale["usdByPool"], "gone": [0.0] * len(stale["usd"])}
    cluster.status = {"spendHistory": stale}
    acct = CostAccountant(CONFIG, cluster.effects())
    _pass(acct, cluster, 30)
    _pass(acct, cluster, 61)  # an hour has ended: written
    history = cluster.status["spendHistory"]
    assert history["usdByPool"]["gone"] is None  # merge patch: null removes the key
    assert set(history["usdByPool"]) == {"l4", "gone"}


def test_disabled_keeps_the_hours_and_raises_nothing() -> None:
    cluster = Cluster()
    cluster.status = {"spendHistory": _usual_week()}
    config = CONFIG.model_copy(
        update={"anomalies": CONFIG.anomalies.model_copy(update={"enabled": False})}
    )
    acct = CostAccountant(config, cluster.effects())
    for minutes in (20, 61, 130):
        _pass(acct, cluster, minutes)
    assert _anomalies(cluster) == []
    assert "spendHistory" in cluster.status


def test_the_report_lists_the_weeks_anomalies_with_their_explanation() -> None:
    import json

    from gpufinops.cli.report import build_report, render_json, render_table

    kept: tuple[Any, ...] = ()
    for h in range(8 * 24):
        start = T0 - timedelta(days=8) + timedelta(hours=h)
        replicas = 8 if h == 7 * 24 + 3 else 2  # yesterday 13:00: a runaway
        kept = record(kept, Interval(start, start + timedelta(hours=1),
                                     {"l4": 2.0 * replicas}, replicas, replicas, 2))  # fmt: skip
    objects = [
        {
            "metadata": {"namespace": "ml", "name": "chat"},
            "spec": SPEC,
            "status": {"spendHistory": to_status(kept).to_wire()},
        },
        {"metadata": {"namespace": "ml", "name": "bare"}, "spec": SPEC, "status": {}},
    ]
    report = build_report(objects, T0, "UTC")
    assert [(hour_label(a.hour), a.scope, a.group) for a in report.anomalies] == [
        ("2026-11-26T13:00Z", "workload", "ml/chat")
    ]
    (doc,) = json.loads(render_json(report))["anomalies"]
    assert (doc["usd"], doc["expected_usd"], doc["excess_usd"]) == (16.0, 4.0, 12.0)
    assert doc["drivers"][0]["cause"] == "ReplicasWithoutDemand"
    assert doc["drivers"][0]["desired_replicas"] == 2
    table = render_table(report)
    assert "spend anomalies (past 7 days)" in table and "ReplicasWithoutDemand" in table
    strict = CONFIG.anomalies.model_copy(update={"threshold": 40.0})
    assert build_report(objects, T0, "UTC", strict).anomalies == []
