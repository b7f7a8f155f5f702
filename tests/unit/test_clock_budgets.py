"""Budgets when the wall clock jumps (an NTP step, a VM resumed) and at month boundaries.

Accounting trusts the wall clock, but only forwards: time before the last
accounted instant is never charged again, and a clock that reads earlier than
that instant (stepped back) is read as that instant. So the month resets exactly
once, when accounting first passes its boundary, whatever the clock does around
it: a backward step to the old month must not bring the old month's spend (or its
alerts, or its enforcement) back, and a forward step over the boundary charges
each side of midnight to its own month.

Deciding what a forward step means is not possible from inside: after an NTP step
the time did not really pass, after a VM resume it did (and the cluster's GPUs
kept running and billing). Spend follows the wall clock, as the cloud bill does.
"""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.api.budget import Budget
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.core.cost.accounting import CostTotals, accrue, as_of, project_month, to_status
from gpufinops.core.cost.budget import (
    Action,
    Spend,
    alerts_due,
    budget_state,
    enforce,
    remember,
)
from gpufinops.core.cost.periods import zone

UTC_ZONE = zone("UTC")
RATE = 10.0  # USD per hour
BUDGET = Budget.model_validate({"monthlyUSD": 100, "enforcement": "Suspend"})
SPEC = AIWorkloadSpec.model_validate(
    {"type": "Training", "costAllocation": {"team": "ml"}, "nodePools": ["l4-spot"],
     "training": {"jobRef": {"name": "j"}}, "budget": BUDGET.model_dump(by_alias=True)}
)  # fmt: skip
MIDNIGHT = datetime(2026, 12, 1, tzinfo=UTC)
"""The month boundary the tests cross."""


class Loop:
    """The cost loop's bookkeeping for one workload, as the handler does it each pass."""

    def __init__(self, start: datetime, spent: float = 0.0) -> None:
        self.totals = CostTotals(spent, spent, RATE, start)
        self.sent: list[str] = []
        self.month = Spend.of(self.totals, start, UTC_ZONE).month
        self.resets = 0

    def tick(self, now: datetime) -> tuple[Spend, Action]:
        last = self.totals.last_accounted_time
        if last is None or now > last:
            self.totals = accrue(self.totals, last or now, now, RATE, UTC_ZONE)
        spend = Spend.of(self.totals, now, UTC_ZONE)
        if spend.month != self.month:
            self.month, self.resets = spend.month, self.resets + 1
        alerts = alerts_due(BUDGET, spend, self.sent)
        self.sent = remember(self.sent, alerts, spend)
        decision = enforce(SPEC, budget_state(BUDGET, spend), 0)
        return spend, decision.action


def test_a_backward_step_over_the_month_boundary_does_not_undo_the_reset() -> None:
    loop = Loop(MIDNIGHT - timedelta(hours=1), spent=150.0)
    spend, action = loop.tick(MIDNIGHT - timedelta(minutes=1))
    assert spend.month == "2026-11" and action == Action.SUSPEND
    spend, action = loop.tick(MIDNIGHT + timedelta(minutes=5))
    assert spend.month == "2026-12" and action == Action.NONE
    assert loop.resets == 1
    # NTP steps the clock back ten minutes, into November.
    spend, action = loop.tick(MIDNIGHT - timedelta(minutes=5))
    assert spend.month == "2026-12", "still December: accounting does not go back"
    assert spend.month_to_date_usd < 1 and action == Action.NONE, "November's overrun stays over"
    assert all(key.startswith(("day:2026-12-01", "month:2026-12")) for key in loop.sent)
    # ...and forward again: nothing resets a second time, nothing is charged twice.
    spend, _ = loop.tick(MIDNIGHT + timedelta(minutes=20))
    assert loop.resets == 1
    assert abs(spend.month_to_date_usd - RATE * 20 / 60) < 1e-9


def test_a_forward_step_over_the_boundary_charges_each_side_to_its_own_month() -> None:
    loop = Loop(MIDNIGHT - timedelta(hours=2), spent=90.0)
    # A VM resumed two days later: the GPUs kept running (and billing) meanwhile.
    spend, action = loop.tick(MIDNIGHT + timedelta(days=2))
    assert spend.month == "2026-12" and loop.resets == 1
    assert abs(spend.month_to_date_usd - 48 * RATE) < 1e-9
    assert abs(spend.today_usd - 0.0) < 1e-9  # exactly midnight of 3 December
    assert action == Action.SUSPEND, "December's own spend is over the budget"
    assert "month:2026-12:exceeded" in loop.sent
    assert all("2026-12" in key for key in loop.sent), "November's alerts are forgotten"


def test_a_backward_step_within_the_month_charges_nothing_and_keeps_the_state() -> None:
    loop = Loop(MIDNIGHT + timedelta(days=10), spent=50.0)
    first, _ = loop.tick(MIDNIGHT + timedelta(days=10, hours=1))
    stepped, _ = loop.tick(MIDNIGHT + timedelta(days=9))
    assert stepped.month_to_date_usd == first.month_to_date_usd
    assert stepped.today_usd == first.today_usd, "not yesterday's zero: the day stays"
    assert stepped.day == first.day


def test_a_reader_behind_the_last_accounting_sees_it_as_of_that_instant() -> None:
    totals = CostTotals(40.0, 140.0, RATE, MIDNIGHT + timedelta(minutes=10))
    behind = MIDNIGHT - timedelta(minutes=10)  # the clock stepped back into November
    seen = as_of(totals, behind, UTC_ZONE)
    assert (seen.today_usd, seen.month_to_date_usd) == (40.0, 140.0)
    status = to_status(totals, behind, UTC_ZONE)
    assert status.month_to_date_usd == 140.0
    assert project_month(totals, behind, UTC_ZONE) >= 140.0, "never below what is spent"


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.floats(-3 * 86_400, 3 * 86_400, allow_nan=False), min_size=1, max_size=12))
def test_any_sequence_of_clock_steps_resets_once_per_boundary_and_never_goes_negative(
    steps: list[float],
) -> None:
    start = MIDNIGHT - timedelta(days=1)
    loop = Loop(start, spent=10.0)
    now, furthest = start, start
    for step in steps:
        now = now + timedelta(seconds=step)
        spend, _ = loop.tick(now)
        furthest = max(furthest, now)
        assert spend.month_to_date_usd >= 0 and spend.today_usd >= 0
        assert spend.month_to_date_usd >= spend.today_usd - 1e-9
        assert spend.month == furthest.strftime("%Y-%m"), "the month is where accounting got"
    crossed = int(furthest >= MIDNIGHT) + int(furthest >= datetime(2027, 1, 1, tzinfo=UTC))
    assert loop.resets == crossed
    # Each instant is charged once: what the month holds never exceeds the time spent in it.
    seen = as_of(loop.totals, furthest, UTC_ZONE)
    month_start = MIDNIGHT if furthest >= MIDNIGHT else start
    in_month = (furthest - month_start).total_seconds() / 3600 * RATE
    extra = 10.0 if furthest < MIDNIGHT else 0.0
    assert 0 <= seen.month_to_date_usd <= in_month + extra + 1e-6
