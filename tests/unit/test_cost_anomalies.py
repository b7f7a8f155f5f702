"""Spend anomalies through the cost pass: the hours it records and keeps in status, the
hour it judges once, the Event and the alert (the controller the operator runs)."""

import asyncio
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from tests.unit.test_cost_allocations import CONFIG, POOLS, SPEC, T0, Cluster, gpu_pod_record, pod
from tests.unit.test_cost_ledger import MemoryLedger

from gpufinops.adapters.alerts import alertmanager_payload
from gpufinops.adapters.allocations import gpu_pod
from gpufinops.api.status import SpendHistory
from gpufinops.controllers.cost import CostAccountant, WorkloadView
from gpufinops.core.cost.anomaly import (
    Interval,
    from_status,
    hour_label,
    record,
    to_status,
    with_hours,
)
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
    """What a previous process wrote: a week at 2 replicas of one L4 GPU ($4/h), up to T0."""
    kept: tuple[Any, ...] = ()
    for h in range(7 * 24):
        start = T0 - timedelta(days=7) + timedelta(hours=h)
        kept = record(kept, Interval(start, start + timedelta(hours=1), {"l4": 4.0}, 2.0, 2, 2))
    return to_status(kept, T0).to_wire()


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies ``--type=merge`` to status."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class Merging(Cluster):
    """Status merged as the API server merges a patch; writes fail while ``fail``."""

    def effects(self) -> Any:
        effects = super().effects()

        def write(namespace: str, name: str, patch: dict[str, Any]) -> None:
            if self.fail:
                raise OSError("API server unreachable")
            self.writes += 1
            self.status = _merge(self.status, patch)

        effects.write_status = write
        return effects


EIGHT = [gpu_pod(gpu_pod_record(pod(n))) for n in "abcdefgh"]  # type: ignore[arg-type]
"""Eight 1-GPU pods on l4 from T0: $16 an hour, where the week spent $4."""
TWO_PODS = EIGHT[:2]


def _view(cluster: Cluster) -> WorkloadView:
    s = cluster.status
    return WorkloadView(
        "ml", "chat", {"kind": "AIWorkload", "metadata": {"name": "chat"}}, SPEC,
        s.get("cost") or {}, s.get("budget") or {}, s.get("recommendations"),
        s.get("observedUsage"), s.get("spendHistory"), desired_replicas=2,
    )  # fmt: skip


def _pass(
    acct: CostAccountant, cluster: Cluster, minutes: int, pods: Any = None, replicas: int = 8
) -> None:
    at = T0 + timedelta(minutes=minutes)
    held = EIGHT if pods is None else pods
    asyncio.run(acct.tick(at, [_view(cluster)], held, POOLS, lambda ns, n: replicas))


def _anomalies(cluster: Cluster) -> list[tuple[str, str]]:
    return [e for e in cluster.events if e[1] == EventReason.SPEND_ANOMALY]


def test_a_runaway_is_raised_once_when_its_hour_ends_and_not_again_after_a_restart() -> None:
    cluster, ledger = Cluster(), GroupLedger()
    cluster.status = {"spendHistory": _usual_week()}
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    for minutes in range(10, 60, 10):  # passes under 15 minutes apart: live figures
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
    for minutes in (10, 20, 30, 40, 50):  # status as read: not rewritten within the hour
        _pass(acct, cluster, minutes)
    assert cluster.status["spendHistory"] == _usual_week()
    _pass(acct, cluster, 61)  # an hour has ended: written, once
    history = SpendHistory.model_validate(cluster.status["spendHistory"])
    kept = from_status(history, T0 + timedelta(minutes=61))
    assert history.recorded_until == T0 + timedelta(minutes=61)
    assert len(kept) == 7 * 24 + 2
    ended = kept[-2]
    assert (ended.usd, ended.gpu_hours, ended.replicas, ended.desired) == (16, 8, 8, 2)
    assert ended.observed_hours == 1.0 and ended.pools == (("l4", 16),)
    # A new process, no group memory: it does not judge the hour that ended before it
    # started (it cannot tell whether its predecessor did), but every hour after it.
    assert _anomalies(cluster) == [("Warning", EventReason.SPEND_ANOMALY)]
    restarted = CostAccountant(CONFIG, cluster.effects())
    _pass(restarted, cluster, 70)  # without memory: the hours before it are not judged
    _pass(restarted, cluster, 121)  # the runaway's second hour is part of the same one
    assert len(_anomalies(cluster)) == 1
    fresh = CostAccountant(CONFIG, cluster.effects())
    cluster.status["spendHistory"] = _usual_week()  # as if the first hour were not kept
    _pass(fresh, cluster, 125)
    _pass(fresh, cluster, 181)  # hours 10:00-12:00 re-recorded from the pods' times
    kept = from_status(SpendHistory.model_validate(cluster.status["spendHistory"]),
                       T0 + timedelta(minutes=181))  # fmt: skip
    assert [h.usd for h in kept[-4:-1]] == [16, 16, 16]
    assert len(_anomalies(cluster)) == 1


def test_what_the_stored_history_holds_and_this_write_does_not_is_removed() -> None:
    cluster = Merging()
    stale = _usual_week()
    stale["usdByPool"] = {**stale["usdByPool"], "gone": [0.0] * len(stale["usd"])}
    stale["desiredReplicaHours"] = [0.0] * len(stale["usd"])
    cluster.status = {"spendHistory": stale}
    acct = CostAccountant(CONFIG, cluster.effects())
    for minutes in range(10, 60, 10):
        _pass(acct, cluster, minutes)
    cluster.fail = True  # the hour's write fails: the next pass writes it again, in full
    _pass(acct, cluster, 61)
    cluster.fail = False
    _pass(acct, cluster, 62)
    history = cluster.status["spendHistory"]
    assert set(history["usdByPool"]) == {"l4"}
    assert len({len(v) for k, v in history.items() if isinstance(v, list)}) == 1
    assert "desiredReplicaHours" in history  # the autoscaler's figure is known: kept


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
    kept = from_status(SpendHistory.model_validate(cluster.status["spendHistory"]),
                       T0 + timedelta(minutes=130))  # fmt: skip
    assert [h.usd for h in kept[-3:-1]] == [16, 16]  # still recorded


def test_the_report_lists_the_weeks_anomalies_with_their_explanation() -> None:
    import json

    from gpufinops.cli.report import build_report, render_json, render_table

    kept = ()
    for h in range(8 * 24):
        start = T0 - timedelta(days=8) + timedelta(hours=h)
        replicas = 8 if h == 7 * 24 + 3 else 2  # yesterday 13:00: a runaway
        kept = record(kept, Interval(start, start + timedelta(hours=1),
                                     {"l4": 2.0 * replicas}, replicas, replicas, 2))  # fmt: skip
    objects = [
        {
            "metadata": {"namespace": "ml", "name": "chat"},
            "spec": SPEC,
            "status": {"spendHistory": to_status(kept, T0).to_wire()},
        },
        {"metadata": {"namespace": "ml", "name": "bare"}, "spec": SPEC, "status": {}},
    ]
    report = build_report(objects, T0, "UTC")
    booked = build_report(
        objects, T0, "UTC", namespace_labels={"ml": {"gpufinops.dev/team": "ads"}}
    )
    assert [g.name for g in booked.groups["team"]] == ["ads"]
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


def test_a_failed_status_write_records_no_hour_twice() -> None:
    cluster, ledger = Merging(), GroupLedger()
    cluster.status = {"spendHistory": _usual_week()}
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    cluster.fail = True
    for minutes in (10, 20, 30, 40, 50):
        _pass(acct, cluster, minutes, pods=TWO_PODS, replicas=2)
    cluster.fail = False
    for minutes in (55, 61):
        _pass(acct, cluster, minutes, pods=TWO_PODS, replicas=2)
    kept = from_status(SpendHistory.model_validate(cluster.status["spendHistory"]),
                       T0 + timedelta(minutes=61))  # fmt: skip
    assert kept[-2].usd == pytest.approx(4.0)  # what the two pods cost, once
    assert _anomalies(cluster) == []


def test_an_outage_is_re_recorded_hour_by_hour_from_the_pods_times() -> None:
    cluster, ledger = Merging(), GroupLedger()
    cluster.status = {"spendHistory": _usual_week()}
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    _pass(acct, cluster, 1, pods=TWO_PODS, replicas=2)
    runaway = TWO_PODS + [gpu_pod(gpu_pod_record(pod(n, started=T0 + timedelta(hours=5))))
                          for n in "cdefgh"]  # type: ignore[arg-type]  # fmt: skip
    _pass(acct, cluster, 6 * 60 + 1, pods=runaway, replicas=8)  # back after 6 hours
    kept = with_hours(acct.books[("ml", "chat")].hours)
    by_hour = [kept[_hour(h)].usd for h in range(10, 16)]
    assert by_hour == pytest.approx([4, 4, 4, 4, 4, 16])
    assert kept[_hour(15)].replicas == pytest.approx(8)
    (alert,) = [a for a in cluster.sent if a.reason == "SpendAnomaly"]
    assert "in the hour from 2026-11-27T15:00Z" in alert.message
    assert "$16.00" in alert.message and "8 replicas" in alert.message


def test_a_tenants_absurd_token_counter_stops_nothing() -> None:
    from gpufinops.core.cost.unit_economics import ServedRates

    cluster, ledger = Merging(), GroupLedger()
    cluster.status = {"spendHistory": _usual_week()}

    def tokens(namespace: str, spec: Any) -> ServedRates:
        return ServedRates(input_tokens=1e305, output_tokens=1e305)

    acct = CostAccountant(CONFIG, cluster.effects(), token_rate=tokens, ledger=ledger)
    for minutes in range(1, 130, 10):
        _pass(acct, cluster, minutes)
    assert cluster.status["cost"]["lastAccountedTime"].startswith("2026-11-27T12:01")
    history = cluster.status["spendHistory"]
    assert all(math.isfinite(x) for x in history["tokens"])
    assert [a for a in cluster.sent if a.reason == "SpendAnomaly"]  # judged all the same


@pytest.mark.parametrize("memory", [("not-an-hour",), ("2027-01-01T00:00Z",), ()])
def test_an_unreadable_or_future_judged_hour_is_repaired(memory: tuple[str, ...]) -> None:
    cluster, ledger = Merging(), GroupLedger()
    cluster.status = {"spendHistory": _usual_week()}
    ledger.groups = {"anomaly/judged": memory}
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    _pass(acct, cluster, 30)
    assert ledger.groups["anomaly/judged"] == (hour_label(_hour(9)),)
    _pass(acct, cluster, 61)
    assert _anomalies(cluster) == [("Warning", EventReason.SPEND_ANOMALY)]


def test_a_forged_history_is_not_believed() -> None:
    cluster = Merging()
    far = _usual_week()
    far["firstHour"] = "2999-01-01T00:00Z"
    cluster.status = {"spendHistory": far}
    acct = CostAccountant(CONFIG, cluster.effects())
    _pass(acct, cluster, 61)
    history = SpendHistory.model_validate(cluster.status["spendHistory"])
    assert history.first_hour == "2026-11-27T10:00Z"  # recorded afresh
    assert len(history.usd) == 2


def test_the_report_reads_the_history_as_the_operator_does() -> None:
    from gpufinops.cli.report import build_report

    kept = ()
    for h in range(8 * 24):
        start = T0 - timedelta(days=8) + timedelta(hours=h)
        replicas = 8 if h == 7 * 24 + 3 else 2
        kept = record(kept, Interval(start, start + timedelta(hours=1),
                                     {"l4": 2.0 * replicas}, replicas, replicas, 2))  # fmt: skip
    good = to_status(kept, T0).to_wire()
    # Not what accounting writes: no instant recorded, or one in the future. The
    # operator records afresh over such a history; the report must not judge it.
    for broken in ({k: v for k, v in good.items() if k != "recordedUntil"},
                   {**good, "recordedUntil": "2099-01-01T00:00:00Z"}):  # fmt: skip
        objects = [{"metadata": {"namespace": "ml", "name": "chat"}, "spec": SPEC,
                    "status": {"spendHistory": broken}}]  # fmt: skip
        assert build_report(objects, T0, "UTC").anomalies == []
