"""The spend ledger: the record a re-created workload continues from, out of tenants' reach.

A suspended Job whose pods are gone spends nothing: with status as the only
record, deleting its AIWorkload and creating it again would restart the month
at $0. With the ledger it continues; status is only shown; entries outlive
their workloads until the month is over; a ledger that cannot be read stops the
pass rather than fall back to status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.unit.test_cost_allocations import CONFIG, POOLS, T0, Cluster, pod, view

from gpufinops.adapters.allocations import gpu_pod, gpu_pod_record
from gpufinops.controllers.cost import CostAccountant
from gpufinops.core.cost.accounting import CostTotals, DaySpend
from gpufinops.core.cost.ledger import LedgerEntry, expired

TRAINING = {
    "type": "Training",
    "costAllocation": {"team": "research"},
    "training": {"jobRef": {"name": "train"}},
    "budget": {"monthlyUSD": 10.0, "enforcement": "Suspend"},
}


JOB_PODS = [gpu_pod(gpu_pod_record(pod(n, owner=("Job", "train"))))  # type: ignore[arg-type]
            for n in ("a", "b")]  # fmt: skip
"""The Job's two 1-GPU pods on l4 since T0: $4 per hour."""


class MemoryLedger:
    """The ConfigMaps' contents, as ``adapters.ledger.SpendLedger`` reads and writes them."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}
        self.fail = False

    def read(self) -> Mapping[tuple[str, str], LedgerEntry | None]:
        if self.fail:
            raise OSError("API server unreachable")
        return {key: LedgerEntry.decode(text) for key, text in self.data.items()}

    def write(
        self, tenant: str, entries: Mapping[str, LedgerEntry], drop: Iterable[str] = ()
    ) -> None:
        for name in drop:
            self.data.pop((tenant, name), None)
        for name, entry in entries.items():
            self.data[(tenant, name)] = entry.encode()


def tick(acct: CostAccountant, cluster: Cluster, at: datetime, present: bool = True) -> None:
    workloads = [view(cluster, TRAINING)] if present else []
    asyncio.run(acct.tick(at, workloads, JOB_PODS if present else [], POOLS, lambda ns, n: None))


def recreate(cluster: Cluster) -> None:
    """Deleted and created again: the new object's status is empty."""
    cluster.status = {}


def spent_and_recreated(ledger: MemoryLedger | None) -> Cluster:
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    # The Job ran two 1-GPU pods for 3 hours ($12 of $10), and was then suspended:
    # its pods are gone (the next passes see none).
    tick(acct, cluster, T0 + timedelta(hours=3))
    assert cluster.status["budget"]["enforcement"] == "Suspend"
    tick(acct, cluster, T0 + timedelta(hours=3, minutes=1), present=False)  # deleted
    recreate(cluster)
    later = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)  # after a restart too
    asyncio.run(
        later.tick(T0 + timedelta(hours=3, minutes=2), [view(cluster, TRAINING)], [], POOLS,
                   lambda ns, n: None)
    )  # fmt: skip
    return cluster


def test_without_a_ledger_a_recreated_workload_starts_the_month_again() -> None:
    cluster = spent_and_recreated(None)
    assert cluster.status["cost"]["monthToDateUSD"] == 0.0  # what the ledger prevents
    assert cluster.status["budget"]["enforcement"] == "None"


def test_with_the_ledger_a_recreated_workload_continues_its_month_and_stays_suspended() -> None:
    ledger = MemoryLedger()
    cluster = spent_and_recreated(ledger)
    assert cluster.status["cost"]["monthToDateUSD"] == 12.0
    assert cluster.status["budget"]["enforcement"] == "Suspend"
    assert cluster.status["budget"]["alertsSent"]  # the alerts already raised, not raised again


def test_status_is_shown_not_believed_once_the_ledger_has_an_entry() -> None:
    ledger = MemoryLedger()
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    tick(acct, cluster, T0 + timedelta(hours=1))  # $4
    cluster.status["cost"] = {**cluster.status["cost"], "monthToDateUSD": 0.0, "todayUSD": 0.0}
    fresh = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)  # no memory to fall back on
    tick(fresh, cluster, T0 + timedelta(hours=2))
    assert cluster.status["cost"]["monthToDateUSD"] == 8.0


def test_an_entry_outlives_its_workload_until_its_month_is_over() -> None:
    ledger = MemoryLedger()
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    tick(acct, cluster, T0 + timedelta(hours=1))
    tick(acct, cluster, T0 + timedelta(days=1), present=False)
    assert ("ml", "w") in ledger.data  # deleted, same month: kept
    tick(acct, cluster, datetime(2026, 12, 1, 1, tzinfo=UTC), present=False)
    assert ("ml", "w") not in ledger.data  # the month is over


def test_an_unreadable_ledger_skips_the_pass_and_loses_nothing() -> None:
    ledger = MemoryLedger()
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    tick(acct, cluster, T0 + timedelta(hours=1))
    ledger.fail = True
    writes = cluster.writes
    tick(acct, cluster, T0 + timedelta(hours=2))
    assert cluster.writes == writes  # nothing decided from status alone
    ledger.fail = False
    tick(acct, cluster, T0 + timedelta(hours=3))
    assert cluster.status["cost"]["monthToDateUSD"] == 12.0  # the skipped hour included


def test_entries_round_trip_and_garbage_is_no_entry() -> None:
    days = (
        DaySpend("2026-11-26", "spot", 3.25, 6.5),
        DaySpend("2026-11-27", "spot", 1, 2, 0.5, 0.2),
    )
    entry = LedgerEntry(CostTotals(1.5, 20.25, 4.0, T0, 30.0, days), ("month:2026-11:0.5",))
    assert LedgerEntry.decode(entry.encode()) == entry
    # The ledger keeps the newest month's days only: a namespace's entries share a ConfigMap.
    two_months = (DaySpend("2026-10-31", "spot", 1.0, 2.0), *days)
    kept = LedgerEntry.decode(LedgerEntry(CostTotals(0, 0, 0, T0, 0, two_months)).encode())
    assert kept is not None and kept.totals.days == days
    # An entry written before days were kept has none; a day that is no amount spoils it.
    old = '{"todayUSD": 1, "monthToDateUSD": 2, "hourlyUSD": 0, "lastAccountedTime": null}'
    assert LedgerEntry.decode(old) == LedgerEntry(CostTotals(1.0, 2.0, 0.0, None, 2.0))
    for text in ("", "{}", "[]", '{"todayUSD": "NaN", "monthToDateUSD": 1, "hourlyUSD": 0}',
                 '{"todayUSD": 1, "monthToDateUSD": 1, "hourlyUSD": 0,'
                 ' "days": [["2026-11-26", "spot", "NaN", 1]]}',
                 '{"todayUSD": 1, "monthToDateUSD": 1, "hourlyUSD": 0,'
                 ' "lastAccountedTime": "2026-11-27T10:00:00"}'):  # fmt: skip
        assert LedgerEntry.decode(text) is None, text
    paris = ZoneInfo("Europe/Paris")
    late = LedgerEntry(CostTotals(last_accounted_time=datetime(2026, 11, 30, 22, 30, tzinfo=UTC)))
    # 23:30 on 30 November in Paris, then 00:45 on 1 December: over there, not in UTC.
    assert expired(late, datetime(2026, 11, 30, 23, 45, tzinfo=UTC), paris)
    assert not expired(late, datetime(2026, 11, 30, 23, 45, tzinfo=UTC), ZoneInfo("UTC"))


def test_a_rewritten_status_is_rewritten_from_the_ledger_even_while_idle() -> None:
    ledger = MemoryLedger()
    cluster = Cluster()
    acct = CostAccountant(CONFIG, cluster.effects(), ledger=ledger)
    tick(acct, cluster, T0 + timedelta(hours=1))  # $4, then nothing runs
    asyncio.run(acct.tick(T0 + timedelta(hours=2), [view(cluster, TRAINING)], [], POOLS,
                          lambda ns, n: None))  # fmt: skip
    writes = cluster.writes
    cluster.status["cost"] = {**cluster.status["cost"], "monthToDateUSD": 0.0}
    asyncio.run(acct.tick(T0 + timedelta(hours=3), [view(cluster, TRAINING)], [], POOLS,
                          lambda ns, n: None))  # fmt: skip
    assert cluster.writes == writes + 1
    assert cluster.status["cost"]["monthToDateUSD"] == 4.0
    # Within the same hour (an hour's end writes the hourly spend history, idle or not).
    asyncio.run(acct.tick(T0 + timedelta(hours=3, minutes=10), [view(cluster, TRAINING)], [],
                          POOLS, lambda ns, n: None))  # fmt: skip
    assert cluster.writes == writes + 1  # idle and as written: no write


def test_a_restart_keeps_the_ledgers_days_and_last_months_from_status() -> None:
    # The ledger holds this month's days only; status also shows last month's (for a
    # closed month's export). A forged day of this month in status is not believed.
    day = T0.date().isoformat()
    ledger = MemoryLedger()
    record = CostTotals(5.0, 5.0, 0.0, T0, 5.0, (DaySpend(day, "on-demand", 5.0, 2.0),))
    ledger.write("ml", {"w": LedgerEntry(record)})
    cluster = Cluster()
    shown = [("2026-10-31", 7.0, 3.0), (day, 0.01, 0.0)]
    forged = [{"date": d, "capacityType": "on-demand", "costUSD": usd, "gpuHours": hours}
              for d, usd, hours in shown]  # fmt: skip
    cluster.status = {"cost": {"daily": forged, "lastAccountedTime": T0.isoformat()}}
    tick(CostAccountant(CONFIG, cluster.effects(), ledger=ledger), cluster, T0)
    days = {(d["date"], d["costUSD"]) for d in cluster.status["cost"]["daily"]}
    assert days == {("2026-10-31", 7.0), (day, 5.0)}
