"""One cost-accounting pass over every AIWorkload, without Kopf (``cost.py`` drives it).

What must survive a restart is in status: the totals and the end of the
last interval counted (``lastAccountedTime``), and the budget alerts already
raised (``alertsSent``). Memory is only a cache of what was last written; it
is refilled from status when empty or when status is ahead of it (another
replica wrote), so a restarted operator continues exactly where the status
says, never counting an interval twice and never skipping one.

Spend over an interval is the GPU-seconds each pod held inside it, from the
pod's container start (and end) times, times its pool's GPU price: a pod
that started halfway through an interval pays for half of it.

The same pass samples the GPUs and replicas each workload holds, by local hour
of day, for the rightsizing rules of ``core.cost.recommend``. They are written to
``status.observedUsage`` when the recommendations are recomputed (every few
minutes, not every pass) and read back by a restarted operator, which would
otherwise need another day of observation before it could advise.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.alerts import SPEND_ANOMALY, BudgetAlert
from gpufinops.adapters.allocations import (
    GpuPod,
    Pools,
    allocations_at,
    holdings,
    holds_at,
    lws_worker_owners,
    targets_of,
)
from gpufinops.adapters.status import without_nulls
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.api.status import BudgetState, CostStatus, ObservedUsage
from gpufinops.config.model import OperatorConfig
from gpufinops.core.cost.accounting import (
    IDLE,
    UNSET,
    Charge,
    CostKey,
    CostLabels,
    CostTotals,
    Footprint,
    charge,
    gpu_prices,
    hourly_rates,
    trusted_totals,
    with_earlier_days,
)
from gpufinops.core.cost.anomaly import (
    RETENTION_HOURS,
    WORKLOAD,
    HourSpend,
    Interval,
    Member,
    SpendAnomaly,
    detect_hours,
    epoch_hour,
    hour_label,
    hour_pieces,
    parse_hour,
    read_history,
    record,
    to_status,
    with_hours,
)
from gpufinops.core.cost.budget import AlertReason, Spend
from gpufinops.core.cost.group_budget import NAMESPACE, TEAM, Group, plan_groups
from gpufinops.core.cost.interval import plan_interval
from gpufinops.core.cost.ledger import LedgerEntry, expired
from gpufinops.core.cost.periods import day_id, month_id, zone
from gpufinops.core.cost.recommend import Usage, observe, recommend
from gpufinops.core.cost.unit_economics import ServedRates, UnitCosts, unit_costs
from gpufinops.core.events import EventReason
from gpufinops.core.validation import check_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkloadView:
    """What the workloads index keeps of an AIWorkload."""

    namespace: str
    name: str
    ref: Mapping[str, Any]
    """apiVersion, kind and metadata (name, namespace, uid): enough to post Events."""
    spec: Mapping[str, Any]
    cost: Mapping[str, Any]
    budget: Mapping[str, Any]
    recommendations: Sequence[Mapping[str, Any]] | None = None
    """``status.recommendations`` as last written (None: never)."""
    observed_usage: Mapping[str, Any] | None = None
    """``status.observedUsage``: what a previous process observed for the recommendations."""
    spend_history: Mapping[str, Any] | None = None
    """``status.spendHistory``: the hours a previous process recorded."""
    desired_replicas: int | None = None
    """``status.replicas.desired``: what the autoscaler asked for (Inference)."""


@dataclass
class CostEffects:
    """Everything the pass does to the outside world, injected so tests can watch it."""

    write_status: Callable[[str, str, dict[str, Any]], None]
    post_event: Callable[[Mapping[str, Any], str, EventReason, str], None]
    send_alerts: Callable[[Sequence[BudgetAlert]], object]
    """Hands alerts over for delivery and returns at once (``AlertQueue.enqueue``), which
    counts failed deliveries itself: a slow endpoint must not hold up the pass."""


TokenRate = Callable[[str, AIWorkloadSpec], ServedRates | None]
"""Tokens and requests per second an Inference workload serves now (None: unknown)."""

MeanUtilization = Callable[[str, str, str], float | None]
"""Mean GPU utilisation (percent) of an Inference target (namespace, kind, name) over the
token-rate window (None: unknown)."""

Utilization = Callable[[str, str, str, float], float | None]
"""Peak GPU utilisation (percent) of (namespace, kind, name) over a window in seconds."""

RECOMMEND_EVERY = timedelta(minutes=5)
"""Recommendations move with days of usage: recomputing them more often only adds writes."""
UTILIZATION_WINDOW = timedelta(days=7)
"""The longest look back for peak utilisation: a week holds every weekday's peak."""
LIVE_INTERVAL = timedelta(minutes=15)
"""Longer since the hours were recorded (a restart, an outage), the gap is re-recorded
from the pods' times, without the replicas, autoscaler figure and tokens of this pass."""
JUDGED = "anomaly/judged"
"""The group memory key of the last hour judged for spend anomalies."""
CATCH_UP_HOURS = 24
"""After an outage, the most hours judged at once (older anomalies are in the report)."""


@dataclass
class _Book:
    totals: CostTotals
    sent: tuple[str, ...]
    visible: dict[str, Any] | None = None
    """The last patch written (or the status read), minus lastAccountedTime and null fields:
    unchanged and idle means no write."""
    series: tuple[str, ...] | None = None
    usage: Usage = field(default_factory=Usage)
    """GPUs and replicas by hour of day (``status.observedUsage``, read back at start)."""
    recommendations: list[dict[str, Any]] | None = None
    """``status.recommendations`` as last written."""
    recommended_at: datetime | None = None
    utilization: float | None = None
    """Peak GPU utilisation over the observed time, refreshed with the recommendations."""
    observed: dict[str, Any] | None = None
    """``status.observedUsage`` as last written or read."""
    spend: Spend | None = None
    """This pass's spend (None: not accounted yet), for team and namespace budgets."""
    ref: Mapping[str, Any] | None = None
    """The workload's reference, to post its spend anomalies on."""
    hours: tuple[HourSpend, ...] = ()
    """Spend hour by hour (``status.spendHistory``, read back at start)."""
    recorded_until: datetime | None = None
    """The instant ``hours`` are recorded up to (``spendHistory.recordedUntil``)."""
    history_written_at: datetime | None = None
    """When ``status.spendHistory`` was last written (None: not by this process)."""
    tokens_per_second: float | None = None
    """Tokens served per second as last read (counted into the hours from the next pass)."""


class Ledger(Protocol):
    """Where the month's spend is kept out of tenants' reach (``adapters.ledger``)."""

    def read(self) -> Mapping[tuple[str, str], LedgerEntry | None]: ...

    def write(
        self, tenant: str, entries: Mapping[str, LedgerEntry], drop: Iterable[str] = ()
    ) -> None: ...


@runtime_checkable
class GroupMemory(Protocol):
    """Where the alerts raised for team and namespace budgets are remembered (the
    spend ledger's namespace), so a restart does not raise them again."""

    def read_groups(self) -> Mapping[str, tuple[str, ...]]: ...

    def write_groups(self, sent: Mapping[str, tuple[str, ...]]) -> None: ...


def _status_totals(view: WorkloadView) -> CostTotals:
    try:
        return CostTotals.from_status(CostStatus.model_validate(view.cost))
    except ValidationError:
        return CostTotals()


def _status_sent(view: WorkloadView) -> tuple[str, ...]:
    try:
        state = BudgetState.model_validate(view.budget)
    except ValidationError:
        return ()
    return tuple(state.alerts_sent or ())


def _visible(cost: Mapping[str, Any], budget: Mapping[str, Any]) -> dict[str, Any]:
    """Cost and budget in the form ``_Book.visible`` compares: as stored, without the
    accounting instant (it moves every pass; an idle workload is not rewritten for it)."""
    moving = {k: v for k, v in cost.items() if k != "lastAccountedTime"}
    visible: dict[str, Any] = without_nulls({"cost": moving, "budget": dict(budget)})
    return visible


def _observed(view: WorkloadView) -> tuple[Usage, float | None]:
    if not view.observed_usage:
        return Usage(), None
    try:
        observed = ObservedUsage.model_validate(view.observed_usage)
    except ValidationError:
        return Usage(), None
    return Usage.from_status(observed), observed.peak_utilization_percent


def _history(view: WorkloadView, now: datetime) -> tuple[tuple[HourSpend, ...], datetime | None]:
    """The hours a previous process recorded and the instant they reach (none, and
    None, when status holds no history this operator wrote)."""
    return read_history(view.spend_history, now)


def _later(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)


class CostAccountant:
    """Accrues spend and decides budgets for all workloads, one pass per interval."""

    def __init__(
        self,
        config: OperatorConfig,
        effects: CostEffects,
        token_rate: TokenRate | None = None,
        utilization: Utilization | None = None,
        mean_utilization: MeanUtilization | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """``ledger`` holds the month's spend where tenants cannot write; without one,
        status is the record (and a re-created workload starts the month again)."""
        self.config, self.effects, self.token_rate = config, effects, token_rate
        self.ledger = ledger
        self._recorded: Mapping[tuple[str, str], LedgerEntry | None] = {}
        """The ledger as read at the start of this pass."""
        self._recording: dict[str, dict[str, LedgerEntry]] = {}
        """What this pass writes to the ledger, by tenant namespace and workload."""
        self.utilization = utilization
        self.mean_utilization = mean_utilization
        self.tz = zone(config.cost.timezone)
        self.prices = gpu_prices(config)
        self.capacity_types = {p.name: str(p.capacity_type) for p in config.node_pools}
        self.footprint = Footprint.of(config)
        self.books: dict[tuple[str, str], _Book] = {}
        self._corrected: dict[tuple[str, str], list[str]] = {}
        """Per workload, the status corrections last reported (reported once)."""
        self.last_pass: datetime | None = None
        self._group_sent: dict[str, tuple[str, ...]] | None = None
        """Alerts raised for team and namespace budgets (None: not read yet)."""
        self._token_reads: list[Coroutine[Any, Any, None]] = []

    def _book(self, view: WorkloadView, now: datetime) -> _Book:
        key = (view.namespace, view.name)
        entry = self._recorded.get(key)
        if entry is not None:
            # The ledger is the record: status (the tenant's to rewrite) is only shown.
            stored, problems = trusted_totals(entry.totals, now)
            sent, source = entry.alerts_sent, "the spend ledger entry"
        else:
            stored, problems = trusted_totals(_status_totals(view), now)
            sent, source = _status_sent(view), "status.cost"
        if problems and self._corrected.get(key) != problems:
            self._corrected[key] = problems
            self.effects.post_event(
                view.ref, "Warning", EventReason.COST_STATUS_CORRECTED,
                f"{source} was not written by this operator's accounting and is not "
                f"trusted: {'; '.join(problems)}",
            )  # fmt: skip
        book = self.books.get(key)
        if book is None or _later(stored.last_accounted_time, book.totals.last_accounted_time):
            if entry is not None:  # the ledger holds this month's days; status, earlier ones
                stored = with_earlier_days(stored, _status_totals(view).days, self.tz)
            # What status already shows: a restart rewrites no idle workload that is unchanged.
            shown = _visible(view.cost, view.budget)
            fresh = _Book(stored, sent, shown, book.series if book else None)
            if book is not None:  # status ahead of memory changes the totals, not the usage seen
                fresh.usage, fresh.utilization = book.usage, book.utilization
                fresh.observed = book.observed
                fresh.hours, fresh.recorded_until = book.hours, book.recorded_until
                fresh.history_written_at = book.history_written_at
                fresh.tokens_per_second = book.tokens_per_second
            else:  # what the previous process observed: no day of observation lost
                fresh.usage, fresh.utilization = _observed(view)
                fresh.observed = dict(view.observed_usage) if view.observed_usage else None
                fresh.hours, fresh.recorded_until = _history(view, now)
                fresh.history_written_at = now if fresh.recorded_until is not None else None
            fresh.recommendations = (
                [dict(r) for r in view.recommendations]
                if view.recommendations is not None
                else None
            )
            book = fresh
            self.books[key] = book
        return book

    async def tick(
        self,
        now: datetime,
        workloads: Sequence[WorkloadView],
        pods: Sequence[GpuPod],
        pools: Pools,
        replicas: Callable[[str, str], int | None],
        *,
        measure_unallocated: bool = True,
    ) -> None:
        by_owner: dict[tuple[str, str, str], list[GpuPod]] = {}
        for pod in pods:
            if pod.owner is not None:
                by_owner.setdefault((pod.namespace, *pod.owner), []).append(pod)
        if self.ledger is not None:
            try:
                self._recorded = await asyncio.to_thread(self.ledger.read)
            except Exception as exc:  # never fall back to what tenants can write
                log.warning("spend ledger not readable, pass skipped: %s", exc)
                return
        self._recording = {}
        seen = set()
        self._token_reads = []
        for view in workloads:
            seen.add((view.namespace, view.name))
            try:
                await self._account(view, now, by_owner, pools, replicas)
            except Exception as exc:  # one workload's failure must not stop the others
                log.warning("cost of %s/%s not accounted: %s", view.namespace, view.name, exc)
        await self._record(now)
        # Prometheus is read last and concurrently: a slow one delays no status write.
        await asyncio.gather(*self._token_reads, return_exceptions=True)
        for key in set(self.books) - seen:
            book = self.books.pop(key)
            if book.series is not None:
                metrics.forget_cost(book.series, tuple(set(self.capacity_types.values())))
        await self._group_budgets(now)  # over the workloads that exist, deleted ones gone
        await self._anomalies(now)
        if measure_unallocated and self.last_pass is not None and now > self.last_pass:
            self._unallocated(pods, pools, now, (now - self.last_pass).total_seconds())
        self.last_pass = now

    async def _group_budgets(self, now: datetime) -> None:
        """Team and namespace budgets over the workloads this process accounts: state in
        metrics, alerts to Alertmanager and the webhook (there is no object to post an
        Event on), each alert once per period, remembered in the ledger's namespace."""
        budgets = self.config.budgets
        if not budgets.teams and not budgets.namespaces:
            return
        remembered = await self._remembered()
        members: dict[Group, list[Spend]] = {}
        for (namespace, _), book in self.books.items():
            if book.spend is None or book.series is None:
                continue  # not accounted yet
            members.setdefault(Group(TEAM, book.series[2]), []).append(book.spend)
            members.setdefault(Group(NAMESPACE, namespace), []).append(book.spend)
        plans = plan_groups(
            budgets, members, remembered, day_id(now, self.tz), month_id(now, self.tz)
        )
        delivered = []
        for plan in plans:
            scope, name = plan.group.scope, plan.group.name
            if plan.state.used_ratio is not None:
                metrics.GROUP_BUDGET_USED_RATIO.labels(scope, name).set(plan.state.used_ratio)
            for a in plan.alerts:
                log.warning("%s", a.message)
                delivered.append(BudgetAlert(
                    str(a.reason), a.key, a.message, name if scope == NAMESPACE else "", "",
                    now, {scope: name, "scope": scope},
                ))  # fmt: skip
        if delivered:
            self.effects.send_alerts(delivered)
        sent = {p.group.key: p.sent for p in plans if p.sent}
        if JUDGED in remembered:  # not a budget's: kept as it is
            sent[JUDGED] = remembered[JUDGED]
        await self._remember(sent)

    async def _record(self, now: datetime) -> None:
        """Write this pass's totals to the ledger, and drop the entries whose month is over."""
        if self.ledger is None:
            return
        stale: dict[str, list[str]] = {}
        for (tenant, name), entry in self._recorded.items():
            if entry is None or expired(entry, now, self.tz):
                stale.setdefault(tenant, []).append(name)
        for tenant in sorted({*self._recording, *stale}):
            entries = self._recording.get(tenant, {})
            try:
                await asyncio.to_thread(self.ledger.write, tenant, entries, stale.get(tenant, ()))
            except Exception as exc:  # the next pass accrues again from the ledger's last entry
                log.warning("spend ledger of namespace %s not written: %s", tenant, exc)

    def _unallocated(self, pods: Sequence[GpuPod], pools: Pools, now: datetime, s: float) -> None:
        """The cost of GPUs on pool nodes that no pod holds, by pool (OpenCost's idle)."""
        held = allocations_at(pods, pools, now, "pods", CostLabels(UNSET))
        rates = hourly_rates(held, pools.capacity, self.prices).by_key
        for pool in sorted(pools.capacity):
            rate = rates.get(CostKey("workload", f"{IDLE}/{pool}"))
            if rate:
                ct = self.capacity_types.get(pool, UNSET)
                metrics.UNALLOCATED_COST.labels(pool, ct).inc(rate * s / 3600)

    async def _account(
        self,
        view: WorkloadView,
        now: datetime,
        by_owner: Mapping[tuple[str, str, str], list[GpuPod]],
        pools: Pools,
        replicas: Callable[[str, str], int | None],
    ) -> None:
        spec = check_spec(dict(view.spec), self.config).spec
        if spec is None:
            return  # an invalid spec has no costAllocation to charge; the spec handler says so
        book = self._book(view, now)
        targets = targets_of(view.name, spec)
        owned = [p for t in targets for p in by_owner.get((view.namespace, *t), [])]
        workers = lws_worker_owners(spec)
        if workers is not None:
            owned += [
                p for (ns, kind, owner), pods in by_owner.items()
                if ns == view.namespace and kind == "StatefulSet" and workers.fullmatch(owner)
                for p in pods
            ]  # fmt: skip
        start = book.totals.last_accounted_time
        if start is None:
            start = min([p.since for p in owned if p.since is not None] + [now])
        current = self._current(view, spec, targets, owned, now, replicas)
        plan = plan_interval(
            spec, book.totals, book.sent, holdings(owned, pools, start, now), start, now,
            current, prices=self.prices, capacity_types=self.capacity_types, tz=self.tz,
            footprint=self.footprint,
        )  # fmt: skip
        spent, totals, state, alerts, sent = (
            plan.spent,
            plan.totals,
            plan.state,
            plan.alerts,
            plan.sent,
        )
        rate = spent.usd_per_hour
        book.ref = view.ref
        try:
            self._record_hours(view, spec, book, owned, pools, current, (start, now, spent))
        except Exception as exc:  # the hourly history must never stop accounting
            log.warning("spend history of %s/%s not recorded: %s", view.namespace, view.name, exc)
        recommendations = self._recommend(view, spec, targets, book, owned, pools, now)
        written = plan.status_patch(now, self.tz)
        cost, budget_patch = written["cost"], written["budget"]
        visible = _visible(cost, budget_patch)
        patch: dict[str, Any] = {"cost": cost, "budget": budget_patch}
        if recommendations is not None:
            patch["recommendations"] = recommendations
        observed = self._observed_patch(book, now)
        if observed is not None:
            patch["observedUsage"] = observed
        history = self._history_patch(book, view, now)
        if history is not None:
            patch["spendHistory"] = history
        # Also when status is not what was written: someone rewrote it (a lower spend, say),
        # and status shows the record, not what was put there.
        shown = _visible(view.cost, view.budget)
        if (
            spent.total_usd > 0
            or visible != book.visible
            or visible != shown
            or recommendations is not None
            or "observedUsage" in patch
            or "spendHistory" in patch
        ):
            await asyncio.to_thread(self.effects.write_status, view.namespace, view.name, patch)
            if history is not None:
                book.history_written_at = now
        book.totals, book.sent, book.visible = totals, sent, visible
        book.spend = plan.spend
        self._recording.setdefault(view.namespace, {})[view.name] = LedgerEntry(totals, sent)
        if recommendations is not None:
            book.recommendations = recommendations
        self._metrics(view, spec, book, spent, state)
        self._token_reads.append(self._per_token(view, spec, book, sum(rate.values())))
        self._alert(view, spec, alerts, now)

    def _record_hours(
        self,
        view: WorkloadView,
        spec: AIWorkloadSpec,
        book: _Book,
        owned: Sequence[GpuPod],
        pools: Pools,
        current: int,
        accounted: tuple[datetime, datetime, Charge],
    ) -> None:
        """Add what was held since the hours were last recorded, hour by hour from the
        pods' own start and end times: a restart, or an outage, re-records the gap
        exactly (as far as the pods are still known), and a failed status write
        records nothing twice (the hours have their own ``recorded_until``)."""
        start, now, spent_then = accounted
        since = book.recorded_until or start
        since = max(since, now - timedelta(hours=RETENTION_HOURS))
        if since >= now:
            return
        live = now - since <= LIVE_INTERVAL  # an ordinary pass: this pass's figures hold
        inference = spec.inference is not None
        hours = book.hours
        for a, b in hour_pieces(since, now):
            if live and (a, b) == (start, now):
                # An ordinary pass within an hour: the interval this pass has just priced.
                spent, replicas = spent_then, float(current)
            else:
                held = holdings(owned, pools, a, b)
                spent = charge(held, self.prices, self.capacity_types)
                # Catching up: pods held over the piece, one replica each.
                seconds = (b - a).total_seconds()
                replicas = (
                    float(current)
                    if live
                    else sum(h.seconds for h in held if h.seconds > 0) / seconds
                )
            desired = view.desired_replicas if live and inference else None
            tokens = book.tokens_per_second if live and inference else None
            hours = record(
                hours,
                Interval(a, b, spent.usd_by_pool, sum(spent.gpu_hours.values()), replicas,
                         desired, tokens),
            )  # fmt: skip
        book.hours, book.recorded_until = hours, now

    @staticmethod
    def _history_patch(book: _Book, view: WorkloadView, now: datetime) -> dict[str, Any] | None:
        """``status.spendHistory`` when an hour has ended since it was last written (or
        never was): a few KB once an hour. Keys the stored object holds and this write
        does not are nulled (a merge patch keeps what it does not name)."""
        last = book.history_written_at
        if last is not None and epoch_hour(last) == epoch_hour(now):
            return None
        if not any(h.usd > 0 for h in book.hours):
            return None  # a workload that never spent is not written for its zeros
        wire: dict[str, Any] = to_status(book.hours, book.recorded_until).to_wire()
        stored = dict(view.spend_history or {})
        patch: dict[str, Any] = {k: None for k in stored if k not in wire}
        kept_pools = stored.get("usdByPool")
        pools = {
            p: None
            for p in (kept_pools if isinstance(kept_pools, dict) else {})
            if p not in wire["usdByPool"]
        }
        return {**patch, **wire, "usdByPool": {**pools, **wire["usdByPool"]}}

    async def _remembered(self) -> dict[str, tuple[str, ...]]:
        """The group memory (team and namespace budget alerts, the last hour judged for
        spend anomalies), read once from the ledger's namespace."""
        if self._group_sent is None:
            self._group_sent = {}
            memory = self.ledger if isinstance(self.ledger, GroupMemory) else None
            if memory is not None:
                try:
                    self._group_sent = dict(await asyncio.to_thread(memory.read_groups))
                except Exception as exc:  # alerts may repeat; spend is unaffected
                    log.warning("team and namespace alert memory not readable: %s", exc)
        return self._group_sent

    async def _remember(self, kept: dict[str, tuple[str, ...]]) -> None:
        if kept == self._group_sent:
            return
        self._group_sent = kept
        memory = self.ledger if isinstance(self.ledger, GroupMemory) else None
        if memory is not None:
            try:
                await asyncio.to_thread(memory.write_groups, kept)
            except Exception as exc:
                log.warning("team and namespace alert memory not written: %s", exc)

    async def _anomalies(self, now: datetime) -> None:
        """Judge every hour that ended since the last one judged, once: Events on the
        workload that drove each anomaly, alerts with its scope, team and model. The
        last hour judged is remembered in the ledger's namespace, so a restart neither
        raises an anomaly again nor skips an hour (up to ``CATCH_UP_HOURS``)."""
        cfg = self.config.anomalies
        if not cfg.enabled:
            return
        latest = epoch_hour(now) - 1  # the last hour that has ended
        memory = await self._remembered()
        judged = memory.get(JUDGED)
        try:
            last = parse_hour(judged[0]) if judged else latest
        except (ValueError, IndexError):
            log.warning("last hour judged for spend anomalies unreadable (%s): from now", judged)
            last = latest
        if last > latest:  # a clock that ran ahead, or a forged memory: not for ever
            log.warning("last hour judged for spend anomalies is in the future (%s)", judged)
            last = latest
        if last >= latest:
            if memory.get(JUDGED) != (hour_label(latest),):
                await self._remember({**memory, JUDGED: (hour_label(latest),)})
            return
        members = []
        refs: dict[str, Mapping[str, Any]] = {}
        for (namespace, name), book in sorted(self.books.items()):
            if book.series is None or book.ref is None:
                continue  # not accounted yet
            member = f"{namespace}/{name}"
            model = book.series[4] if book.series[4] != UNSET else None
            members.append(Member(member, book.series[2], model, with_hours(book.hours)))
            refs[member] = book.ref
        hours = range(max(last + 1, latest - CATCH_UP_HOURS + 1), latest + 1)
        try:
            found = detect_hours(members, hours, cfg)
        except Exception as exc:  # never the pass: the next hour judges again
            log.warning("spend anomalies not judged: %s", exc)
            return
        alerts = []
        for anomaly in found:
            try:
                alerts.append(self._raise(anomaly, refs, members, now))
            except Exception as exc:  # one anomaly's failure must not hold the others
                log.warning("spend anomaly of %s %s not raised: %s",
                            anomaly.scope, anomaly.group, exc)  # fmt: skip
        if alerts:
            self.effects.send_alerts(alerts)
        await self._remember({**memory, JUDGED: (hour_label(latest),)})

    def _raise(
        self,
        anomaly: SpendAnomaly,
        refs: Mapping[str, Mapping[str, Any]],
        members: Sequence[Member],
        now: datetime,
    ) -> BudgetAlert:
        """The Event on the workload that drove it most (the workload itself, for its
        own), and the alert, labelled so Alertmanager can route it to the team."""
        log.warning("%s", anomaly.message)
        metrics.SPEND_ANOMALIES.labels(anomaly.scope).inc()
        # A group's anomaly without drivers (each workload at its usual, the sum not)
        # has no workload to post on: the alert only.
        top = anomaly.drivers[0].member if anomaly.drivers else None
        if top is None and anomaly.scope == WORKLOAD:
            top = anomaly.group
        ref = refs.get(top) if top is not None else None
        namespace, _, workload = (top or "").partition("/")
        if ref is not None:
            kind = "Normal" if anomaly.severity == "info" else "Warning"
            message = anomaly.message_for(namespace)  # other tenants' workloads not named
            self.effects.post_event(ref, kind, EventReason.SPEND_ANOMALY, message)
        driver = next((m for m in members if m.name == top), None)
        labels = {"scope": anomaly.scope, anomaly.scope: anomaly.group}
        if anomaly.scope == WORKLOAD:
            labels.pop(WORKLOAD)
        if driver is not None:
            labels.setdefault("team", driver.team)
            if driver.model:
                labels.setdefault("model", driver.model)
        return BudgetAlert(
            SPEND_ANOMALY, anomaly.key, anomaly.message, namespace, workload, now, labels,
            anomaly.severity,
        )  # fmt: skip

    @staticmethod
    def _observed_patch(book: _Book, now: datetime) -> dict[str, Any] | None:
        """``status.observedUsage`` when the recommendations were recomputed (or first
        observed), for a workload that has held GPUs, and only if it changed: idle
        workloads and a restart write nothing."""
        due = book.recommended_at == now or book.observed is None
        if not due or sum(book.usage.gpu_hours) <= 0:
            return None
        wire: dict[str, Any] = book.usage.to_status(book.utilization).to_wire()
        if wire == book.observed:
            return None
        book.observed = wire
        return wire

    def _recommend(
        self,
        view: WorkloadView,
        spec: AIWorkloadSpec,
        targets: Sequence[tuple[str, str]],
        book: _Book,
        owned: Sequence[GpuPod],
        pools: Pools,
        now: datetime,
    ) -> list[dict[str, Any]] | None:
        """Observe this interval; every few minutes, the recommendations to write if changed.

        GPUs and replicas are sampled at ``now`` and held over the interval since
        the last pass, by local hour of day. Nothing is returned (status is left
        as it is) until enough has been seen, so a restarted operator keeps the
        recommendations its predecessor wrote while it observes again.
        """
        running = [p for p in owned if holds_at(p, now)]
        held: dict[str, float] = {}
        for p in running:
            pool = pools.by_node.get(p.node)
            if pool is not None:
                held[pool.name] = held.get(pool.name, 0.0) + p.gpus
        where = max(sorted(held), key=lambda name: held[name]) if held else None
        gpus = sum(p.gpus for p in running)
        book.usage = observe(book.usage, now, gpus, len(running), where, self.tz)
        if book.recommended_at is not None and now - book.recommended_at < RECOMMEND_EVERY:
            return None
        book.recommended_at = now
        if self.utilization is not None and targets:
            window = min(book.usage.total_hours * 3600, UTILIZATION_WINDOW.total_seconds())
            if window >= 60:  # read in the background, used from the next recommendation on
                self._token_reads.append(self._read_utilization(view, targets[0], book, window))
        found = recommend(
            spec, book.usage, self.config.node_pools, book.utilization, self.config.cost.timezone
        )
        if found is None:
            return None
        wire = [
            {
                "kind": str(r.kind),
                "message": r.message,
                "estimatedMonthlySavingUSD": r.estimated_monthly_saving_usd,
            }
            for r in found
        ]
        return wire if wire != book.recommendations else None

    async def _read_utilization(
        self, view: WorkloadView, target: tuple[str, str], book: _Book, window: float
    ) -> None:
        if self.utilization is None:
            return
        kind, name = target
        book.utilization = await asyncio.to_thread(
            self.utilization, view.namespace, kind, name, window
        )

    def _current(
        self,
        view: WorkloadView,
        spec: AIWorkloadSpec,
        targets: Sequence[tuple[str, str]],
        owned: Sequence[GpuPod],
        now: datetime,
        replicas: Callable[[str, str], int | None],
    ) -> int:
        """Replicas now: the Deployment's for Inference, running GPU pods otherwise (of a
        LeaderWorkerSet: its leaders, one per group, as its scale counts)."""
        if spec.inference is not None and targets:
            if spec.inference.target_ref.is_deployment:
                found = replicas(view.namespace, targets[0][1])
                if found is not None:
                    # Spot children (spec.inference.spot) hold replicas of the same service.
                    children = (replicas(view.namespace, t[1]) for t in targets[1:])
                    return found + sum(c for c in children if c is not None)
            primary = (targets[0][0], targets[0][1])
            return sum(1 for p in owned if p.owner == primary and holds_at(p, now))
        return sum(1 for p in owned if holds_at(p, now))

    def _metrics(
        self,
        view: WorkloadView,
        spec: AIWorkloadSpec,
        book: _Book,
        spent: Charge,
        state: BudgetState,
    ) -> None:
        usd, rate = spent.usd, spent.usd_per_hour
        a = spec.cost_allocation
        series = (view.namespace, view.name, a.team, a.project or UNSET, a.model or UNSET,
                  a.environment or UNSET, a.cost_center or UNSET)  # fmt: skip
        types = tuple(sorted(set(self.capacity_types.values())))
        if book.series is not None and book.series != series:
            metrics.forget_cost(book.series, types)
        book.series = series
        for ct in types:
            if usd.get(ct, 0.0) > 0:
                metrics.COST_TOTAL.labels(*series, ct).inc(usd[ct])
            if spent.kwh.get(ct, 0.0) > 0:
                metrics.ENERGY_TOTAL.labels(*series, ct).inc(spent.kwh[ct])
            if spent.kg_co2e.get(ct, 0.0) > 0:
                metrics.CARBON_TOTAL.labels(*series, ct).inc(spent.kg_co2e[ct])
            metrics.HOURLY_COST.labels(*series, ct).set(rate.get(ct, 0.0))
        if state.used_ratio is not None:
            metrics.BUDGET_USED_RATIO.labels(*series).set(state.used_ratio)

    async def _per_token(
        self, view: WorkloadView, spec: AIWorkloadSpec, book: _Book, usd_per_hour: float
    ) -> None:
        """Unit costs (per million tokens, input and output tokens, per request): the
        spend rate over what was served, both as of now, in OpenCost's two bases:
        ``allocation`` charges every GPU-hour the workload holds; ``usage`` only the
        share its GPUs were busy (mean DCGM utilisation over the same window), which
        shows what the tokens would cost with no idle headroom."""
        if self.token_rate is None or spec.inference is None:
            return
        labels = (view.namespace, view.name, spec.cost_allocation.model or UNSET)
        served = await asyncio.to_thread(self.token_rate, view.namespace, spec)
        book.tokens_per_second = served.tokens if served is not None else None
        busy = None
        if self.mean_utilization is not None and served is not None:
            ref = spec.inference.target_ref
            busy = await asyncio.to_thread(
                self.mean_utilization, view.namespace, ref.kind, ref.name
            )
        weight = self.config.cost.output_token_weight
        allocation = unit_costs(usd_per_hour, served or ServedRates(), weight)
        usage = (
            allocation.scaled(min(max(busy, 0.0), 100.0) / 100.0)
            if busy is not None
            else UnitCosts()
        )
        for basis, costs in (("allocation", allocation), ("usage", usage)):
            for gauge, value in (
                (metrics.COST_PER_MILLION_TOKENS, costs.per_million_tokens),
                (metrics.COST_PER_MILLION_INPUT_TOKENS, costs.per_million_input_tokens),
                (metrics.COST_PER_MILLION_OUTPUT_TOKENS, costs.per_million_output_tokens),
                (metrics.COST_PER_REQUEST, costs.per_request),
            ):
                if value is None:
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels, basis)
                else:
                    gauge.labels(*labels, basis).set(value)

    def _alert(
        self, view: WorkloadView, spec: AIWorkloadSpec, alerts: Sequence[Any], now: datetime
    ) -> None:
        """Events first (the record), then Alertmanager and the webhook (best effort, in
        the background: the pass does not wait for them)."""
        if not alerts:
            return
        for alert in alerts:
            kind = "Normal" if alert.reason == AlertReason.THRESHOLD_CROSSED else "Warning"
            self.effects.post_event(view.ref, kind, EventReason(alert.reason), alert.message)
        a = spec.cost_allocation
        keys = (("team", a.team), ("project", a.project), ("model", a.model),
                ("environment", a.environment))  # fmt: skip
        labels = {k: v for k, v in keys if v}
        delivered = [
            BudgetAlert(str(x.reason), x.key, x.message, view.namespace, view.name, now, labels)
            for x in alerts
        ]
        self.effects.send_alerts(delivered)
