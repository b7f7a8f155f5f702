"""GPU spend: GPU-seconds held times the per-GPU price of the pool, over calendar periods.

The persisted state of one cost key (a workload, a team, an idle pool) is its
totals for the current day and month plus ``last_accounted_time``, the end of
the last interval included. Time before that instant is never charged again,
so replaying an interval, or a restart in the middle of one, cannot
double-count; and the totals belong to the period containing that instant, so
the first interval of a new day or month starts them from zero, even when the
operator was down across the boundary.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from gpufinops.api.spec import CostAllocation
from gpufinops.api.status import CostStatus, DailyCost
from gpufinops.config.model import OperatorConfig
from gpufinops.core.cost.periods import (
    day_id,
    month_bounds,
    month_id,
    next_day_start,
    period_of_end,
    split_days,
)

IDLE = "__idle__"
"""Owner of GPUs that sit on pool nodes allocated to nobody (OpenCost's name)."""
UNSET = "__unset__"
"""Group of spend whose workload leaves that costAllocation key empty."""


HISTORY_DAYS = 62
"""Days of spend kept per workload: the month so far and all of the previous one,
so a closed month can be exported after it ends."""


@dataclass(frozen=True)
class DaySpend:
    """Spend of one calendar day (in the cost time zone) on one capacity type."""

    day: str
    """``YYYY-MM-DD``."""
    capacity_type: str
    usd: float
    gpu_hours: float
    kwh: float = 0.0
    """Energy of the GPUs on pools whose power is configured (times the PUE)."""
    kg_co2e: float = 0.0
    """Its emissions at the pools' grid intensity (location-based)."""


@dataclass(frozen=True)
class CostTotals:
    """What must survive a restart for one cost key."""

    today_usd: float = 0.0
    month_to_date_usd: float = 0.0
    hourly_usd: float = 0.0
    """Spend rate of the last accounted interval: the basis of the projection."""
    last_accounted_time: datetime | None = None
    total_usd: float = 0.0
    """Spend since the workload was first accounted: a Training run's whole cost."""
    days: tuple[DaySpend, ...] = ()
    """The last ``HISTORY_DAYS`` days' spend, by capacity type, oldest first: the
    non-overlapping daily charges of an export."""

    @classmethod
    def from_status(cls, status: CostStatus | None) -> "CostTotals":
        if status is None:
            return cls()
        return cls(
            today_usd=status.today_usd or 0.0,
            month_to_date_usd=status.month_to_date_usd or 0.0,
            hourly_usd=status.hourly_usd or 0.0,
            last_accounted_time=status.last_accounted_time,
            total_usd=status.total_usd or 0.0,
            days=tuple(
                DaySpend(
                    d.date, d.capacity_type, d.usd, d.gpu_hours, d.kwh or 0.0, d.kg_co2e or 0.0
                )
                for d in status.daily or ()
            ),
        )


CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)
"""A recorded instant this far ahead of the operator's clock is not a clock difference."""


def trusted_totals(totals: CostTotals, now: datetime) -> tuple[CostTotals, list[str]]:
    """The totals read back from status, with what no accounting could have written undone.

    Status is writable by whoever may write ``aiworkloads/status``: an instant in
    the future would freeze accrual until then, a negative amount would pay for
    later spend. Such values are not trusted: the instant is dropped (accrual
    goes on from this pass) and a negative amount counts as nothing spent; each
    correction is named so it can be reported.
    """
    problems: list[str] = []
    last = totals.last_accounted_time
    if last is not None and last > now + CLOCK_SKEW_TOLERANCE:
        problems.append(f"lastAccountedTime {last.isoformat()} is in the future")
        last = None
    amounts = {"todayUSD": totals.today_usd, "monthToDateUSD": totals.month_to_date_usd,
               "hourlyUSD": totals.hourly_usd, "totalUSD": totals.total_usd}  # fmt: skip
    fixed = {}
    for name, value in amounts.items():
        ok = math.isfinite(value) and value >= 0
        if not ok:
            problems.append(f"{name} {value} is not an amount spent")
        fixed[name] = value if ok else 0.0
    days = tuple(d for d in totals.days if _is_spend(d))
    if len(days) != len(totals.days):
        problems.append(f"{len(totals.days) - len(days)} daily entries are not amounts spent")
    if not problems:
        return totals, []
    return CostTotals(
        fixed["todayUSD"], fixed["monthToDateUSD"], fixed["hourlyUSD"], last, fixed["totalUSD"],
        days,
    ), problems  # fmt: skip


def _is_spend(d: DaySpend) -> bool:
    return all(math.isfinite(v) and v >= 0 for v in (d.usd, d.gpu_hours, d.kwh, d.kg_co2e))


def accrue(
    totals: CostTotals, start: datetime, end: datetime, usd_per_hour: float, tz: ZoneInfo
) -> CostTotals:
    """Add spend at ``usd_per_hour`` over ``[start, end)``, minus what is already counted."""
    if usd_per_hour < 0:
        raise ValueError(f"usd_per_hour must be >= 0, got {usd_per_hour}")
    last = totals.last_accounted_time
    begin = _uncounted_from(totals, start)
    if end <= begin:
        return totals
    today, month, total = totals.today_usd, totals.month_to_date_usd, totals.total_usd
    current = period_of_end(last, tz) if last is not None else None
    for a, b in split_days(begin, end, tz):
        day, mon = day_id(a, tz), month_id(a, tz)
        if current is None or current[0] != day:
            today = 0.0
        if current is None or current[1] != mon:
            month = 0.0
        current = (day, mon)
        usd = usd_per_hour * (b - a).total_seconds() / 3600.0
        today += usd
        month += usd
        total += usd
    return CostTotals(today, month, usd_per_hour, end, total, totals.days)


def with_earlier_days(record: CostTotals, shown: tuple[DaySpend, ...], tz: ZoneInfo) -> CostTotals:
    """The record's totals with the days of earlier months taken from ``shown``.

    The spend ledger keeps the days of the record's own month only (its size is
    bounded per namespace); status shows the previous month's too, which a closed
    month's export reads. Days of the record's month come from the record alone.
    """
    last = record.last_accounted_time
    if last is None:
        return record
    month = period_of_end(last, tz)[1]
    kept = {d.day[:7] for d in record.days} | {month}
    earlier = tuple(d for d in shown if d.day[:7] < min(kept) and _is_spend(d))
    if not earlier:
        return record
    days = sorted(earlier + record.days, key=lambda d: (d.day, d.capacity_type))
    newest = sorted({d.day for d in days})[-HISTORY_DAYS:]
    return replace(record, days=tuple(d for d in days if d.day in newest))


def _uncounted_from(totals: CostTotals, start: datetime) -> datetime:
    last = totals.last_accounted_time
    return start if last is None or start > last else last


def add_days(
    days: tuple[DaySpend, ...],
    start: datetime,
    end: datetime,
    spent: "Charge",
    since: datetime,
    tz: ZoneInfo,
) -> tuple[DaySpend, ...]:
    """The daily history after ``[since, end)`` of an interval ``[start, end)`` that
    cost ``spent``, spread evenly over the interval as the totals are; at most
    ``HISTORY_DAYS`` days, the oldest dropped."""
    seconds = (end - start).total_seconds()
    if seconds <= 0 or end <= since:
        return days
    book = {(d.day, d.capacity_type): d for d in days}
    for a, b in split_days(since, end, tz):
        share = (b - a).total_seconds() / seconds
        day = day_id(a, tz)
        for ct in sorted(set(spent.usd) | set(spent.gpu_hours)):
            old = book.get((day, ct), DaySpend(day, ct, 0.0, 0.0))
            book[(day, ct)] = DaySpend(
                day, ct,
                old.usd + spent.usd.get(ct, 0.0) * share,
                old.gpu_hours + spent.gpu_hours.get(ct, 0.0) * share,
                old.kwh + spent.kwh.get(ct, 0.0) * share,
                old.kg_co2e + spent.kg_co2e.get(ct, 0.0) * share,
            )  # fmt: skip
    kept = sorted({d for d, _ in book})[-HISTORY_DAYS:]
    return tuple(book[k] for k in sorted(book) if k[0] in kept)


@dataclass(frozen=True)
class Holding:
    """GPUs one pod held on one pool during an accounting interval."""

    pool: str | None
    """None: on no configured pool, so nothing prices it."""
    gpus: float
    seconds: float
    """Seconds of the interval the GPUs were held (a pod started halfway holds half)."""
    holds_now: bool
    """Whether it still holds them at the interval's end (the rate of the projection)."""


@dataclass(frozen=True)
class Charge:
    """What a workload's holdings cost over an interval, by capacity type."""

    usd: dict[str, float]
    usd_per_hour: dict[str, float]
    """The rate at the interval's end: GPU spend moves in steps, so the current rate
    projects the month better than the interval's average."""
    gpu_hours: dict[str, float] = field(default_factory=dict)
    """GPU-hours priced (what an export quotes as the consumed and priced quantity)."""
    kwh: dict[str, float] = field(default_factory=dict)
    """Energy of those GPUs, on pools whose power is known."""
    kg_co2e: dict[str, float] = field(default_factory=dict)
    """Its emissions, on pools whose grid intensity is known too."""
    usd_by_pool: dict[str, float] = field(default_factory=dict)
    """The same USD by node pool (what spend anomalies name as their drivers)."""

    @property
    def total_usd(self) -> float:
        return sum(self.usd.values())


@dataclass(frozen=True)
class Footprint:
    """What one GPU-hour on each pool draws and emits (pools without a figure: absent)."""

    kwh_per_gpu_hour: Mapping[str, float] = field(default_factory=dict)
    kg_co2e_per_kwh: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, config: OperatorConfig) -> "Footprint":
        pue = config.cost.power_usage_effectiveness
        return cls(
            {p.name: p.gpu_power_watts / 1000.0 * pue for p in config.node_pools
             if p.gpu_power_watts is not None},
            {p.name: p.grid_intensity / 1000.0 for p in config.node_pools
             if p.grid_intensity is not None},
        )  # fmt: skip


def charge(
    holdings: Iterable[Holding],
    prices: Mapping[str, float],
    capacity_types: Mapping[str, str],
    footprint: Footprint | None = None,
) -> Charge:
    """Price the holdings of one interval; GPUs on an unpriced pool cost nothing. With
    ``footprint``, their energy and emissions too (where the pool's figures are known)."""
    usd: dict[str, float] = {}
    rate: dict[str, float] = {}
    hours: dict[str, float] = {}
    kwh: dict[str, float] = {}
    kg: dict[str, float] = {}
    by_pool: dict[str, float] = {}
    footprint = footprint or Footprint()
    for h in holdings:
        price = prices.get(h.pool) if h.pool is not None else None
        if h.pool is None or price is None:
            continue
        ct = capacity_types.get(h.pool, UNSET)
        gpu_hours = h.gpus * h.seconds / 3600.0
        usd[ct] = usd.get(ct, 0.0) + price * gpu_hours
        by_pool[h.pool] = by_pool.get(h.pool, 0.0) + price * gpu_hours
        hours[ct] = hours.get(ct, 0.0) + gpu_hours
        per_hour = footprint.kwh_per_gpu_hour.get(h.pool)
        if per_hour is not None:
            kwh[ct] = kwh.get(ct, 0.0) + per_hour * gpu_hours
            intensity = footprint.kg_co2e_per_kwh.get(h.pool)
            if intensity is not None:
                kg[ct] = kg.get(ct, 0.0) + intensity * per_hour * gpu_hours
        if h.holds_now:
            rate[ct] = rate.get(ct, 0.0) + h.gpus * price
    return Charge(usd, rate, hours, kwh, kg, by_pool)


def account(
    totals: CostTotals, start: datetime, end: datetime, spent: Charge, tz: ZoneInfo
) -> CostTotals:
    """The totals after an interval ``[start, end)`` that cost ``spent``.

    The interval's spend is spread evenly over it where it crosses midnight or a
    month's end; the hourly rate kept is the rate at ``end``.
    """
    if end > start:
        average = spent.total_usd * 3600.0 / (end - start).total_seconds()
        since = _uncounted_from(totals, start)
        days = add_days(totals.days, start, end, spent, since, tz)
        totals = replace(accrue(totals, start, end, average, tz), days=days)
    totals = replace(totals, hourly_usd=sum(spent.usd_per_hour.values()))
    if totals.last_accounted_time is None or totals.last_accounted_time < end:
        totals = replace(totals, last_accounted_time=end)
    return totals


def reading_time(totals: CostTotals, now: datetime) -> datetime:
    """``now``, or the last accounted instant when the clock reads earlier.

    A wall clock stepped back (NTP, a restored VM) must not take the periods back
    with it: the month that accounting has reached stays the current month, so
    it resets exactly once, and an old month's spend never comes back.
    """
    last = totals.last_accounted_time
    return last if last is not None and now < last else now


def as_of(totals: CostTotals, now: datetime, tz: ZoneInfo) -> CostTotals:
    """The totals as a reader at ``now`` should see them: periods that ended read zero.

    A workload with no pods since yesterday must not show yesterday's spend as
    today's; ``last_accounted_time`` is kept, so accounting resumes exactly.
    """
    last = totals.last_accounted_time
    if last is None:
        return totals
    now = reading_time(totals, now)
    day, mon = period_of_end(last, tz)
    today = totals.today_usd if day == day_id(now, tz) else 0.0
    month = totals.month_to_date_usd if mon == month_id(now, tz) else 0.0
    return replace(totals, today_usd=today, month_to_date_usd=month)


PATTERN_DAYS = 7
"""Complete days the projection averages: a week, so weekdays and weekends both count."""
MIN_PATTERN_DAYS = 3
"""Fewer complete days than this (a new workload) and the projection uses the run rate."""


def typical_day(totals: CostTotals, now: datetime, tz: ZoneInfo) -> float | None:
    """Mean spend of the complete days of the last week, or None with too few.

    The days counted run from the first day with spend (a workload created last
    Tuesday has no Monday) to yesterday; a day in between without spend counts as
    a day that cost nothing (scaled to zero, suspended).
    """
    today = date.fromisoformat(day_id(now, tz))
    first = min((date.fromisoformat(d.day) for d in totals.days), default=None)
    if first is None:
        return None
    start = max(first, today - timedelta(days=PATTERN_DAYS))
    count = (today - start).days
    if count < MIN_PATTERN_DAYS:
        return None
    spent = sum(d.usd for d in totals.days if start <= date.fromisoformat(d.day) < today)
    return spent / count


def project_month(totals: CostTotals, now: datetime, tz: ZoneInfo) -> float:
    """The month's spend so far plus what the rest of it will cost if its days are like
    the last week's: today up to a typical day's spend, then a typical day for each
    day left.

    GPU spend follows the day (replicas scaled up for the afternoon peak, down at
    night), so the current rate over-projects at the peak and under-projects at
    night; the mean of the past days does neither. A workload with fewer than
    ``MIN_PATTERN_DAYS`` complete days projects with its current rate instead, and
    so does one that has spent nothing since yesterday began (a finished job, a
    service shut down): it is not going to have typical days.
    """
    now = reading_time(totals, now)
    seen = as_of(totals, now, tz)
    _, end = month_bounds(now, tz)
    typical = typical_day(totals, now, tz)
    yesterday = (date.fromisoformat(day_id(now, tz)) - timedelta(days=1)).isoformat()
    recent = (
        seen.hourly_usd > 0
        or seen.today_usd > 0
        or any(d.day == yesterday and d.usd > 0 for d in totals.days)
    )
    if typical is None or not recent:
        remaining_hours = max(0.0, (end - now).total_seconds() / 3600.0)
        return seen.month_to_date_usd + seen.hourly_usd * remaining_hours
    tomorrow = next_day_start(now, tz)
    days_left = (end.astimezone(tz).date() - tomorrow.astimezone(tz).date()).days
    rest_of_today = max(0.0, typical - seen.today_usd)
    return seen.month_to_date_usd + rest_of_today + typical * max(0, days_left)


def month_footprint(totals: CostTotals, now: datetime, tz: ZoneInfo) -> tuple[float, float]:
    """kWh and kgCO2e of the month so far, from its days."""
    month = month_id(reading_time(totals, now), tz)
    days = [d for d in totals.days if d.day[:7] == month]
    return sum(d.kwh for d in days), sum(d.kg_co2e for d in days)


def to_status(totals: CostTotals, now: datetime, tz: ZoneInfo) -> CostStatus:
    """``status.cost`` of a workload, rounded to cents for people (totals stay exact)."""
    seen = as_of(totals, now, tz)
    month_kwh, month_kg = month_footprint(totals, now, tz)
    return CostStatus(
        hourly_usd=round(seen.hourly_usd, 4),
        today_usd=round(seen.today_usd, 2),
        month_to_date_usd=round(seen.month_to_date_usd, 2),
        projected_month_usd=round(project_month(totals, now, tz), 2),
        total_usd=round(totals.total_usd, 2),
        last_accounted_time=totals.last_accounted_time,
        daily=[
            DailyCost(
                date=d.day, capacity_type=d.capacity_type, usd=round(d.usd, 9),
                gpu_hours=round(d.gpu_hours, 9), kwh=round(d.kwh, 9) or None,
                kg_co2e=round(d.kg_co2e, 9) or None,
            )
            for d in totals.days
        ] or None,
        month_to_date_kwh=round(month_kwh, 6) if month_kwh else None,
        month_to_date_kg_co2e=round(month_kg, 6) if month_kg else None,
    )  # fmt: skip


@dataclass(frozen=True)
class CostLabels:
    """The costAllocation keys spend is grouped by."""

    team: str
    project: str | None = None
    model: str | None = None
    environment: str | None = None

    @classmethod
    def from_spec(cls, allocation: CostAllocation) -> "CostLabels":
        return cls(allocation.team, allocation.project, allocation.model, allocation.environment)


IDLE_LABELS = CostLabels(IDLE, IDLE, IDLE, IDLE)


@dataclass(frozen=True)
class Allocation:
    """GPUs one workload holds on one pool over an interval (fractions allowed)."""

    workload: str
    """``namespace/name`` of the AIWorkload, or ``__idle__/<pool>``."""
    pool: str
    gpus: float
    labels: CostLabels


class CostKey(NamedTuple):
    """One row of a cost report: a dimension and its value, e.g. ("team", "search")."""

    dimension: str
    name: str


DIMENSIONS = ("workload", "team", "project", "model", "environment")


def gpu_prices(config: OperatorConfig) -> dict[str, float]:
    """USD per GPU-hour of each configured pool."""
    return {p.name: p.gpu_hourly_price_usd for p in config.node_pools}


def idle_allocations(
    allocations: Iterable[Allocation], capacity: Mapping[str, float]
) -> list[Allocation]:
    """GPUs on each pool's nodes that no workload holds, owned by ``__idle__``."""
    used: dict[str, float] = {}
    for a in allocations:
        used[a.pool] = used.get(a.pool, 0.0) + a.gpus
    out = []
    for pool, gpus in sorted(capacity.items()):
        free = gpus - used.get(pool, 0.0)
        if free > 0:
            out.append(Allocation(f"{IDLE}/{pool}", pool, free, IDLE_LABELS))
    return out


def keys_of(a: Allocation) -> list[CostKey]:
    """Every report row an allocation's spend counts towards."""
    values = (a.workload, a.labels.team, a.labels.project, a.labels.model, a.labels.environment)
    return [CostKey(d, v or UNSET) for d, v in zip(DIMENSIONS, values, strict=True)]


@dataclass(frozen=True)
class Rates:
    """USD per hour of each cost key during one interval."""

    by_key: dict[CostKey, float]
    unpriced_pools: frozenset[str]
    """Pools GPUs were seen on that have no price: their GPUs are not charged."""


def hourly_rates(
    allocations: Iterable[Allocation],
    capacity: Mapping[str, float],
    prices: Mapping[str, float],
) -> Rates:
    """Spend rate of every workload, costAllocation group and idle pool."""
    held = [a for a in allocations if a.gpus > 0]
    rows: dict[CostKey, float] = {}
    unpriced = set()
    for a in held + idle_allocations(held, capacity):
        price = prices.get(a.pool)
        if price is None:
            unpriced.add(a.pool)
            continue
        for key in keys_of(a):
            rows[key] = rows.get(key, 0.0) + a.gpus * price
    return Rates(rows, frozenset(unpriced))
