"""Cost accounting: additive, idempotent, never negative, calendar-aligned in any zone."""

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.status import CostStatus
from gpufinops.config import load_config
from gpufinops.core.cost.accounting import (
    HISTORY_DAYS,
    IDLE,
    Allocation,
    Charge,
    CostKey,
    CostLabels,
    CostTotals,
    DaySpend,
    Footprint,
    Holding,
    account,
    accrue,
    as_of,
    charge,
    gpu_prices,
    hourly_rates,
    project_month,
    to_status,
    with_earlier_days,
)
from gpufinops.core.cost.periods import month_bounds, split_days

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
zones = st.sampled_from(ZONES).map(ZoneInfo)
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
spans = st.integers(min_value=0, max_value=40 * 86400).map(lambda s: timedelta(seconds=s))
rates = st.floats(min_value=0, max_value=500, allow_nan=False)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def same(a: CostTotals, b: CostTotals) -> bool:
    return (
        close(a.today_usd, b.today_usd)
        and close(a.month_to_date_usd, b.month_to_date_usd)
        and a.last_accounted_time == b.last_accounted_time
    )


def local_day_start(t: datetime, tz: ZoneInfo) -> datetime:
    d = (t - timedelta(microseconds=1)).astimezone(tz).date()
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


@settings(max_examples=200, deadline=None)
@given(zones, instants, spans, spans, rates)
def test_accrual_is_additive_over_split_intervals(
    tz: ZoneInfo, start: datetime, first: timedelta, second: timedelta, rate: float
) -> None:
    mid, end = start + first, start + first + second
    whole = accrue(CostTotals(), start, end, rate, tz)
    split = accrue(accrue(CostTotals(), start, mid, rate, tz), mid, end, rate, tz)
    if end > start:
        assert same(whole, split)


@settings(max_examples=200, deadline=None)
@given(zones, instants, spans, spans, rates)
def test_repeated_or_overlapping_intervals_are_counted_once(
    tz: ZoneInfo, start: datetime, first: timedelta, second: timedelta, rate: float
) -> None:
    mid, end = start + first, start + first + second
    once = accrue(CostTotals(), start, end, rate, tz)
    assert accrue(once, start, end, rate, tz) == once
    assert accrue(once, start, mid, rate, tz) == once
    # A restart mid-interval: [start, mid) was persisted, the new process replays [start, end).
    restarted = accrue(accrue(CostTotals(), start, mid, rate, tz), start, end, rate, tz)
    if end > start:
        assert same(restarted, once)


@settings(max_examples=200, deadline=None)
@given(zones, instants, spans, rates)
def test_period_totals_are_the_spend_since_the_local_period_began(
    tz: ZoneInfo, start: datetime, span: timedelta, rate: float
) -> None:
    end = start + span
    totals = accrue(CostTotals(), start, end, rate, tz)
    if end <= start:
        assert totals == CostTotals()
        return
    month_start, _ = month_bounds(end - timedelta(microseconds=1), tz)
    day_start = local_day_start(end, tz)
    hours_month = (end - max(start, month_start)).total_seconds() / 3600
    hours_day = (end - max(start, day_start)).total_seconds() / 3600
    assert close(totals.month_to_date_usd, rate * hours_month)
    assert close(totals.today_usd, rate * hours_day)
    assert 0 <= totals.today_usd <= totals.month_to_date_usd + 1e-6


@settings(max_examples=100, deadline=None)
@given(zones, instants, st.lists(st.tuples(spans, rates), min_size=1, max_size=8))
def test_totals_are_never_negative_and_time_only_moves_forward(
    tz: ZoneInfo, start: datetime, steps: list[tuple[timedelta, float]]
) -> None:
    totals, t = CostTotals(), start
    for span, rate in steps:
        # Intervals may also arrive late or out of order (start before the last one).
        totals = accrue(totals, t - span / 2, t + span, rate, tz)
        t += span
        assert totals.today_usd >= 0 and totals.month_to_date_usd >= 0
        last = totals.last_accounted_time
        assert last is None or last >= start


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", datetime(2026, 3, 8), 23.0),
        ("America/New_York", datetime(2026, 11, 1), 25.0),
        ("Europe/Paris", datetime(2026, 3, 29), 23.0),
        ("Europe/Paris", datetime(2026, 10, 25), 25.0),
    ],
)
def test_a_dst_day_has_its_real_length(zone: str, day: datetime, hours: float) -> None:
    tz = ZoneInfo(zone)
    start = day.replace(tzinfo=tz).astimezone(UTC)
    end = (day + timedelta(days=1)).replace(tzinfo=tz).astimezone(UTC)
    totals = accrue(CostTotals(), start - timedelta(hours=3), end, 1.0, tz)
    assert totals.today_usd == pytest.approx(hours)
    assert len(list(split_days(start - timedelta(hours=3), end, tz))) == 2


def test_month_end_in_paris_resets_the_month_at_local_midnight() -> None:
    tz = ZoneInfo("Europe/Paris")  # 2026-10-31 23:00 UTC is 2026-11-01 00:00 in Paris
    t0 = datetime(2026, 10, 31, 21, 0, tzinfo=UTC)
    totals = accrue(CostTotals(), datetime(2026, 10, 1, tzinfo=UTC), t0, 2.0, tz)
    assert totals.month_to_date_usd == pytest.approx(2.0 * (30 * 24 + 21))
    after = accrue(totals, t0, datetime(2026, 11, 1, 1, 0, tzinfo=UTC), 2.0, tz)
    assert after.month_to_date_usd == pytest.approx(4.0)  # 23:00 to 01:00 UTC
    assert after.today_usd == pytest.approx(4.0)


def test_restart_over_the_month_boundary_starts_the_new_month_from_zero() -> None:
    tz = ZoneInfo("America/New_York")
    before = accrue(
        CostTotals(),
        datetime(2026, 11, 30, 12, tzinfo=UTC),
        datetime(2026, 12, 1, 2, tzinfo=UTC),  # 21:00 on Nov 30 in New York
        3.0,
        tz,
    )
    assert before.month_to_date_usd == pytest.approx(42.0)
    # The operator was down from 21:00 to 03:00 local; it resumes at 02:00 local on Dec 1.
    resume = datetime(2026, 12, 1, 7, tzinfo=UTC)
    reader = as_of(before, resume, tz)
    assert (reader.today_usd, reader.month_to_date_usd) == (0.0, 0.0)
    after = accrue(before, resume, resume + timedelta(hours=1), 3.0, tz)
    assert (after.today_usd, after.month_to_date_usd) == (pytest.approx(3.0), pytest.approx(3.0))


def test_status_round_trip_keeps_the_accounting_point() -> None:
    tz = ZoneInfo("UTC")
    t0, t1 = datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 10, 6, tzinfo=UTC)
    totals = accrue(CostTotals(), t0, t1, 10.0, tz)
    status = to_status(totals, t1, tz)
    wire = CostStatus.model_validate(status.to_wire())
    assert wire.month_to_date_usd == 60.0
    assert wire.projected_month_usd == pytest.approx(60.0 + 10.0 * (20 * 24 + 18))
    restored = CostTotals.from_status(wire)
    assert accrue(restored, t0, t1, 10.0, tz) == restored


def test_projection_is_month_to_date_plus_run_rate_for_the_rest_of_the_month() -> None:
    tz = ZoneInfo("Europe/Paris")
    now = datetime(2026, 2, 28, 22, 0, tzinfo=UTC)  # 23:00 local, one hour before March
    totals = CostTotals(0.0, 100.0, 5.0, now)
    assert project_month(totals, now, tz) == pytest.approx(105.0)


LABELS = CostLabels("search", "assistant", "llama", "prod")


def test_rates_group_by_workload_team_and_idle_pool_with_fractional_gpus() -> None:
    prices = gpu_prices(load_config(None))
    allocations = [
        Allocation("ml/a", "l4-on-demand", 1.5, LABELS),
        Allocation("ml/b", "l4-on-demand", 0.5, CostLabels("search")),
        Allocation("ml/c", "a100-on-demand", 8, CostLabels("research", model="llama")),
    ]
    capacity = {"l4-on-demand": 4, "a100-on-demand": 8, "l4-spot": 4}
    rates = hourly_rates(allocations, capacity, prices).by_key
    l4, a100, spot = prices["l4-on-demand"], prices["a100-on-demand"], prices["l4-spot"]
    assert rates[CostKey("workload", "ml/a")] == pytest.approx(1.5 * l4)
    assert rates[CostKey("team", "search")] == pytest.approx(2 * l4)
    assert rates[CostKey("model", "llama")] == pytest.approx(1.5 * l4 + 8 * a100)
    assert rates[CostKey("project", "__unset__")] == pytest.approx(0.5 * l4 + 8 * a100)
    assert rates[CostKey("workload", f"{IDLE}/l4-on-demand")] == pytest.approx(2 * l4)
    assert rates[CostKey("workload", f"{IDLE}/l4-spot")] == pytest.approx(4 * spot)
    assert CostKey("workload", f"{IDLE}/a100-on-demand") not in rates
    total = 4 * l4 + 8 * a100 + 4 * spot
    for dim in ("workload", "team", "project", "model", "environment"):
        assert sum(v for k, v in rates.items() if k.dimension == dim) == pytest.approx(total)


def test_unpriced_pools_are_reported_not_charged() -> None:
    rates = hourly_rates([Allocation("ml/a", "nowhere", 1, LABELS)], {}, {"l4": 1.0})
    assert rates.by_key == {}
    assert rates.unpriced_pools == frozenset({"nowhere"})


def test_a_charge_prices_held_seconds_and_keeps_the_rate_at_the_end() -> None:
    prices, types = {"l4": 2.0, "l4-spot": 0.5}, {"l4": "on-demand", "l4-spot": "spot"}
    spent = charge(
        [
            Holding("l4", 2, 1800, holds_now=True),  # half an hour of two GPUs
            Holding("l4-spot", 1, 3600, holds_now=False),  # ended with the interval
            Holding(None, 8, 3600, holds_now=True),  # on no pool: nothing prices it
            Holding("unpriced", 1, 3600, holds_now=True),
        ],
        prices,
        types,
    )
    assert spent.usd == {"on-demand": pytest.approx(2.0), "spot": pytest.approx(0.5)}
    assert spent.usd_per_hour == {"on-demand": pytest.approx(4.0)}
    assert spent.total_usd == pytest.approx(2.5)
    assert spent.gpu_hours == {"on-demand": pytest.approx(1.0), "spot": pytest.approx(1.0)}


def test_an_interval_across_midnight_is_split_and_the_total_runs_on_across_months() -> None:
    tz = ZoneInfo("UTC")
    start = datetime(2026, 11, 30, 23, tzinfo=UTC)
    before = CostTotals(1.0, 50.0, 0.0, start, total_usd=120.0)
    spent = Charge({"spot": 4.0}, {"spot": 3.0})
    after = account(before, start, start + timedelta(hours=2), spent, tz)
    assert after.today_usd == pytest.approx(2.0)  # the hour after midnight
    assert after.month_to_date_usd == pytest.approx(2.0)  # a new month
    assert after.total_usd == pytest.approx(124.0)
    assert after.hourly_usd == pytest.approx(3.0)  # the rate at the end, not the average
    assert after.last_accounted_time == start + timedelta(hours=2)


def test_the_daily_history_splits_spend_by_day_and_capacity_type() -> None:
    tz = ZoneInfo("UTC")
    start = datetime(2026, 11, 30, 23, tzinfo=UTC)
    spent = Charge({"spot": 4.0, "on-demand": 2.0}, {}, {"spot": 8.0, "on-demand": 1.0})
    after = account(CostTotals(), start, start + timedelta(hours=2), spent, tz)
    assert [(d.day, d.capacity_type, d.usd, d.gpu_hours) for d in after.days] == [
        ("2026-11-30", "on-demand", 1.0, 0.5), ("2026-11-30", "spot", 2.0, 4.0),
        ("2026-12-01", "on-demand", 1.0, 0.5), ("2026-12-01", "spot", 2.0, 4.0),
    ]  # fmt: skip
    # The same interval again is counted once, in the days as in the totals.
    again = account(after, start, start + timedelta(hours=2), spent, tz)
    assert again.days == after.days
    back = CostTotals.from_status(CostStatus.model_validate(to_status(after, start, tz).to_wire()))
    assert back.days == after.days


@settings(max_examples=100, deadline=None)
@given(
    tz=zones,
    start=instants,
    steps=st.lists(st.integers(60, 30 * 3600), min_size=1, max_size=80),
    usd=st.floats(0.0, 100.0),
)
def test_the_days_add_up_to_the_total_and_keep_at_most_two_months(
    tz: ZoneInfo, start: datetime, steps: list[int], usd: float
) -> None:
    totals, at = CostTotals(), start
    for seconds in steps:
        end = at + timedelta(seconds=seconds)
        totals = account(totals, at, end, Charge({"spot": usd}, {}, {"spot": usd / 2}), tz)
        at = end
    assert len({d.day for d in totals.days}) <= HISTORY_DAYS
    if (at - start).days < HISTORY_DAYS - 2:  # nothing dropped yet
        assert math.isclose(sum(d.usd for d in totals.days), totals.total_usd,
                            rel_tol=1e-9, abs_tol=1e-6)  # fmt: skip
    month = month_bounds(at - timedelta(microseconds=1), tz)[0]  # the month `at` ends
    in_month = [d for d in totals.days if d.day >= month.astimezone(tz).date().isoformat()]
    assert math.isclose(sum(d.usd for d in in_month), totals.month_to_date_usd,
                        rel_tol=1e-9, abs_tol=1e-6)  # fmt: skip


def test_earlier_months_days_come_from_status_and_the_records_month_from_the_record() -> None:
    tz = ZoneInfo("UTC")
    record = CostTotals(5.0, 9.0, 1.0, datetime(2026, 12, 2, 8, tzinfo=UTC), 9.0,
                        (DaySpend("2026-12-01", "spot", 4.0, 8.0),))  # fmt: skip
    shown = (
        DaySpend("2026-11-30", "spot", 7.0, 14.0),  # last month: only status has it
        DaySpend("2026-11-29", "spot", -3.0, 1.0),  # no amount spent: never taken
        DaySpend("2026-12-01", "spot", 0.5, 1.0),  # the record's month: the record wins
    )
    merged = with_earlier_days(record, shown, tz)
    assert [(d.day, d.usd) for d in merged.days] == [("2026-11-30", 7.0), ("2026-12-01", 4.0)]
    assert merged.month_to_date_usd == 9.0
    # A record whose month has no day yet still owns that month.
    fresh = replace(record, days=(), last_accounted_time=datetime(2026, 12, 1, 0, 5, tzinfo=UTC))
    assert [d.day for d in with_earlier_days(fresh, shown, tz).days] == ["2026-11-30"]


def _peaky(tz: ZoneInfo, until: datetime) -> CostTotals:
    """$30/h from 09:00 to 17:00 local, nothing otherwise ($240 a day), accounted
    every 15 minutes from the 1st of November to ``until``."""
    totals, at = CostTotals(), datetime(2026, 11, 1, tzinfo=tz).astimezone(UTC)
    while at < until:
        end = at + timedelta(minutes=15)
        if 9 <= at.astimezone(tz).hour < 17:
            spent = Charge({"on-demand": 7.5}, {"on-demand": 30.0}, {"on-demand": 0.25})
        else:
            spent = Charge({}, {})
        totals = account(totals, at, end, spent, tz)
        at = end
    return totals


MONTH = 30 * 240.0
"""November at $240 a day."""


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_the_projection_follows_the_daily_pattern_not_the_peak_rate(zone: str) -> None:
    tz = ZoneInfo(zone)
    noon = datetime(2026, 11, 11, 12, tzinfo=tz).astimezone(UTC)  # three hours into the peak
    totals = _peaky(tz, noon)
    assert as_of(totals, noon, tz).today_usd == pytest.approx(90.0)
    # The current rate for the rest of the month would project about twice the month.
    hours_left = (datetime(2026, 12, 1, tzinfo=tz).astimezone(UTC) - noon).total_seconds() / 3600
    assert as_of(totals, noon, tz).month_to_date_usd + 30.0 * hours_left > 1.8 * MONTH
    # The last week's days say what it will cost, at noon as at midnight.
    assert project_month(totals, noon, tz) == pytest.approx(MONTH)
    midnight = datetime(2026, 11, 12, tzinfo=tz).astimezone(UTC)
    assert project_month(_peaky(tz, midnight), midnight, tz) == pytest.approx(MONTH)


def test_a_new_workload_projects_with_its_rate_until_it_has_three_days() -> None:
    tz = ZoneInfo("UTC")
    two_days = datetime(2026, 11, 3, tzinfo=UTC)
    # Midnight after two days, off-peak: rate 0, so the month to date is the projection.
    assert project_month(_peaky(tz, two_days), two_days, tz) == pytest.approx(480.0)
    three_days = datetime(2026, 11, 4, tzinfo=UTC)
    assert project_month(_peaky(tz, three_days), three_days, tz) == pytest.approx(MONTH)


def test_a_workload_that_stopped_is_not_projected_to_go_on() -> None:
    tz = ZoneInfo("UTC")
    ran = _peaky(tz, datetime(2026, 11, 8, tzinfo=UTC))  # a week, then nothing
    idle = account(ran, datetime(2026, 11, 8, tzinfo=UTC), datetime(2026, 11, 9, 12, tzinfo=UTC),
                   Charge({}, {}), tz)  # fmt: skip
    at = datetime(2026, 11, 9, 12, tzinfo=UTC)
    assert project_month(idle, at, tz) == pytest.approx(7 * 240.0)  # the week it ran
    # A nightly trough is not a stop: spend yesterday keeps the pattern.
    night = datetime(2026, 11, 8, 3, tzinfo=UTC)
    assert project_month(_peaky(tz, night), night, tz) == pytest.approx(MONTH)


def test_energy_and_emissions_follow_the_gpu_hours_of_pools_with_figures() -> None:
    config = load_config(None).model_copy(deep=True)
    pools = {p.name: p for p in config.node_pools}
    pools["l4-spot"].gpu_power_watts, pools["l4-spot"].grid_intensity = 72.0, 400.0
    pools["l4-on-demand"].gpu_power_watts = 72.0  # no grid intensity: energy only
    pools["a100-on-demand"].gpu_power_watts = None
    config.cost.power_usage_effectiveness = 1.25
    footprint = Footprint.of(config)
    spent = charge(
        [Holding("l4-spot", 2, 3600, holds_now=True), Holding("l4-on-demand", 1, 3600, True),
         Holding("a100-on-demand", 8, 3600, True)],  # no power figure: unknown, not zero
        gpu_prices(config), {p.name: str(p.capacity_type) for p in config.node_pools},
        footprint,
    )  # fmt: skip
    # 2 GPU-hours x 72 W x PUE 1.25 = 0.18 kWh, at 400 g/kWh = 0.072 kg.
    assert spent.kwh == {"spot": pytest.approx(0.18), "on-demand": pytest.approx(0.09)}
    assert spent.kg_co2e == {"spot": pytest.approx(0.072)}
    tz = ZoneInfo("UTC")
    start = datetime(2026, 11, 30, 23, tzinfo=UTC)
    after = account(CostTotals(), start, start + timedelta(hours=2), spent, tz)
    status = to_status(after, start + timedelta(hours=2), tz)
    # Half of the interval fell in December: the month's figures are that half.
    assert status.month_to_date_kwh == pytest.approx(0.135)
    assert status.month_to_date_kg_co2e == pytest.approx(0.036)
    back = CostTotals.from_status(CostStatus.model_validate(status.to_wire()))
    assert back.days == after.days


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        accrue(CostTotals(), datetime(2026, 1, 1), datetime(2026, 1, 2), 1.0, ZoneInfo("UTC"))
