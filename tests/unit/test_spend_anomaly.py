"""Spend anomalies (core): the hourly record, the seasonal baseline, the explanation."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.config.model import AnomalyConfig
from gpufinops.core.cost.anomaly import (
    MAX_TOKENS_PER_SECOND,
    MODEL,
    RETENTION_HOURS,
    TEAM,
    WORKLOAD,
    Cause,
    HourSpend,
    Interval,
    Judge,
    Member,
    baseline,
    detect,
    epoch_hour,
    explain,
    from_status,
    hour_label,
    is_anomalous,
    parse_hour,
    record,
    to_status,
    with_hours,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)
CFG = AnomalyConfig()


def _hour(day: int, hour: int) -> int:
    return epoch_hour(T0 + timedelta(days=day, hours=hour))


def _flat(usd: float, days: int = 8) -> dict[int, float]:
    return {_hour(d, h): usd for d in range(days) for h in range(24)}


def _history(
    days: int,
    replicas: float = 2.0,
    *,
    pool: str = "a100",
    price: float = 4.0,
    tokens_per_s: float = 100.0,
    change: dict[str, float] | None = None,
    at: tuple[int, int] = (7, 2),
) -> dict[int, HourSpend]:
    """Hourly intervals of a workload with ``replicas`` one-GPU replicas; at ``at`` (day,
    hour) ``change`` multiplies replicas, tokens, gpus per replica or the price."""
    kept: tuple[HourSpend, ...] = ()
    change = change or {}
    for d in range(days):
        for h in range(24):
            start = T0 + timedelta(days=d, hours=h)
            c = change if (d, h) == at else {}
            reps = replicas * c.get("replicas", 1.0)
            gpus = reps * c.get("gpus", 1.0)
            usd = gpus * price * c.get("price", 1.0)
            where = pool if "price" not in c else "h100-on-demand"
            kept = record(
                kept,
                Interval(
                    start, start + timedelta(hours=1), {where: usd}, gpus, reps, replicas,
                    tokens_per_s * c.get("tokens", 1.0),
                ),
            )  # fmt: skip
    return with_hours(kept)


def test_hour_labels_round_trip() -> None:
    h = _hour(3, 17)
    assert hour_label(h) == "2026-12-04T17:00Z"
    assert parse_hour(hour_label(h)) == h
    with pytest.raises(ValueError, match="naive"):
        epoch_hour(datetime(2026, 1, 1))


def test_an_interval_is_cut_at_hour_boundaries_in_proportion_to_time() -> None:
    start = T0 + timedelta(minutes=45)
    kept = record((), Interval(start, start + timedelta(minutes=30), {"a": 6.0, "b": 2.0}, 1.0, 4))
    first, second = kept
    assert (first.hour, second.hour) == (_hour(0, 0), _hour(0, 1))
    assert first.usd == pytest.approx(4.0) and second.usd == pytest.approx(4.0)
    assert first.pools == (("a", 3.0), ("b", 1.0))
    assert first.observed_hours == pytest.approx(0.25)
    assert first.replicas == pytest.approx(4.0)  # mean over the observed quarter hour
    assert first.desired is None


def test_retention_keeps_the_newest_hours() -> None:
    kept = record((), Interval(T0, T0 + timedelta(days=20), {"a": 1.0}, 1.0, 1))
    assert len(kept) == RETENTION_HOURS
    assert kept[-1].hour == _hour(19, 23)
    assert kept[0].hour == _hour(19, 23) - RETENTION_HOURS + 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(1, 20_000), st.floats(0, 1000)),
        min_size=1,
        max_size=8,
    )
)
def test_recording_keeps_every_dollar_within_retention(
    parts: list[tuple[int, int, float]],
) -> None:
    kept: tuple[HourSpend, ...] = ()
    for offset, length, usd in parts:
        start = T0 + timedelta(seconds=offset)
        kept = record(kept, Interval(start, start + timedelta(seconds=length), {"a": usd}))
    assert sum(h.usd for h in kept) == pytest.approx(sum(p[2] for p in parts), rel=1e-9, abs=1e-6)
    assert all(h.observed_hours <= 1.0 for h in kept)


def test_baseline_is_the_median_of_the_same_hour_and_needs_min_days() -> None:
    values = _flat(10.0, days=3)
    values[_hour(1, 5)] = 1000.0  # one earlier anomaly moves neither median nor MAD
    base = baseline(values, _hour(3, 5), CFG)
    assert base is not None
    assert (base.median, base.days) == (10.0, 3)
    assert base.scale == pytest.approx(1.0)  # the floor: 10 % of the median
    assert baseline(values, _hour(2, 5), CFG) is None  # two days only


def test_an_hour_is_anomalous_only_past_the_threshold_and_the_least_excess() -> None:
    values = _flat(10.0, days=7)
    h = _hour(7, 3)
    for usd, expected in ((10.0, False), (13.9, False), (14.1, True), (200.0, True)):
        values[h] = usd
        assert is_anomalous(values, h, CFG) is expected, usd
    small = {k: v / 100 for k, v in values.items()}  # $0.10/h: +$1.90 is not worth a page
    small[h] = 0.5
    assert not is_anomalous(small, h, CFG)
    assert is_anomalous(small, h, CFG.model_copy(update={"min_excess_usd_per_hour": 0.1}))


def test_the_evening_peak_is_not_an_anomaly_but_the_same_spend_at_night_is() -> None:
    values = {_hour(d, h): (50.0 if 18 <= h < 22 else 5.0) for d in range(8) for h in range(24)}
    assert not is_anomalous(values, _hour(7, 19), CFG)
    values[_hour(7, 3)] = 50.0
    assert is_anomalous(values, _hour(7, 3), CFG)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.5, 500), min_size=8, max_size=8),
    st.floats(0.01, 100),
)
def test_judgement_is_scale_free_without_the_least_excess(days: list[float], factor: float) -> None:
    cfg = CFG.model_copy(update={"min_excess_usd_per_hour": 0.0})
    values = {_hour(d, 4): v for d, v in enumerate(days)}
    scaled = {k: v * factor for k, v in values.items()}
    h = _hour(7, 4)
    base = baseline(values, h, cfg)
    assert base is not None
    if abs(values[h] - base.median - cfg.threshold * base.scale) > 1e-6 * base.median:
        assert is_anomalous(values, h, cfg) == is_anomalous(scaled, h, cfg)
    if values[h] <= base.median:
        assert not is_anomalous(values, h, cfg)


def test_an_anomaly_is_raised_when_it_starts_not_while_it_flaps_and_again_when_it_doubles() -> None:
    values = _flat(10.0)
    for h, usd in ((2, 30.0), (3, 30.0), (4, 10.0), (5, 35.0), (6, 90.0), (7, 100.0), (12, 30.0)):
        values[_hour(7, h)] = usd
    raised = [h for h in range(24) if Judge(values, CFG).raised(_hour(7, h))]
    # 02:00 starts it; 05:00 is the same episode after one normal hour; 06:00 tripled its
    # excess (80 against 25): raised again; 07:00 did not double; 12:00 is a new one.
    assert raised == [2, 6, 12]


def _rows(
    rows: list[tuple[int, int, str, float, float, float, float, float]],
) -> dict[int, HourSpend]:
    """(day, hour, pool, usd, gpu-hours, replicas, desired, tokens per second) per hour."""
    kept: tuple[HourSpend, ...] = ()
    for d, h, pool, usd, gpu, reps, desired, tps in rows:
        start = T0 + timedelta(days=d, hours=h)
        kept = record(kept, Interval(start, start + timedelta(hours=1), {pool: usd}, gpu, reps,
                                     desired, tps))  # fmt: skip
    return with_hours(kept)


def _cause_of(history: dict[int, HourSpend], day: int, hour: int) -> Cause:
    anomaly = explain(WORKLOAD, "ns/w", _hour(day, hour), {"ns/w": history}, CFG)
    assert anomaly is not None
    return anomaly.drivers[0].cause


def test_a_dearer_pool_is_the_price_even_while_tokens_rise() -> None:
    usual = [(d, 0, "a100", 8.0, 2.0, 2.0, 2.0, 100.0) for d in range(7)]
    history = _rows([*usual, (7, 0, "h100", 16.0, 2.0, 2.0, 2.0, 150.0)])
    assert _cause_of(history, 7, 0) is Cause.PRICE


def test_replicas_the_autoscaler_asked_for_with_more_tokens_are_demand() -> None:
    # One replica to two is a 2x step; tokens rose 1.3x and the autoscaler wanted two.
    usual = [(d, 0, "a100", 4.0, 1.0, 1.0, 1.0, 100.0) for d in range(7)]
    asked = _rows([*usual, (7, 0, "a100", 8.0, 2.0, 2.0, 2.0, 130.0)])
    assert _cause_of(asked, 7, 0) is Cause.DEMAND
    # The same step the autoscaler did not ask for (set by hand, say) is not.
    unasked = _rows([*usual, (7, 0, "a100", 8.0, 2.0, 2.0, 1.0, 130.0)])
    assert _cause_of(unasked, 7, 0) is Cause.REPLICAS


def test_a_runaway_on_top_of_a_demand_rise_is_raised_with_its_own_cause() -> None:
    usual = [(d, h, "a100", 8.0, 2.0, 2.0, 2.0, 100.0) for d in range(7) for h in (0, 1)]
    history = _rows([*usual, (7, 0, "a100", 12.8, 3.2, 3.2, 3.2, 160.0),
                     (7, 1, "a100", 32.0, 8.0, 8.0, 2.0, 100.0)])  # fmt: skip
    member = [Member("ns/w", "t", None, history)]
    (first,) = detect(member, _hour(7, 0), CFG)
    (second,) = detect(member, _hour(7, 1), CFG)
    assert (first.drivers[0].cause, second.drivers[0].cause) == (Cause.DEMAND, Cause.REPLICAS)
    assert (first.severity, second.severity) == ("info", "warning")


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"replicas": 7.0}, Cause.REPLICAS),
        ({"replicas": 4.0, "tokens": 4.0}, Cause.DEMAND),
        ({"gpus": 4.0}, Cause.LARGER_REPLICAS),
        ({"price": 3.0}, Cause.PRICE),
    ],
)
def test_the_explanation_names_what_rose(change: dict[str, float], cause: Cause) -> None:
    history = _history(8, change=change)
    anomaly = explain(WORKLOAD, "ns/w", _hour(7, 2), {"ns/w": history}, CFG)
    assert anomaly is not None
    (driver,) = anomaly.drivers
    assert driver.cause is cause
    assert driver.excess == pytest.approx(anomaly.excess)
    assert driver.pools[0][1] > 0


def test_the_message_says_who_and_why() -> None:
    chat = _history(8, replicas=3.0, change={"replicas": 14 / 3})
    embed = _history(8, replicas=1.0, pool="l4", price=0.8)
    anomaly = explain(TEAM, "search", _hour(7, 2), {"search/chat": chat, "search/embed": embed},
                      CFG)  # fmt: skip
    assert anomaly is not None
    assert [d.member for d in anomaly.drivers] == ["search/chat"]  # embed spent as usual
    assert anomaly.message == (
        "team search spent $56.80 in the hour from 2026-12-08T02:00Z, usually $12.80 "
        "(+$44.00, 4.4x). search/chat +$44.00: ReplicasWithoutDemand, 14 replicas "
        "(usually 3; the autoscaler wanted 3), tokens 1.0x usual, on a100 +$44.00"
    )


def test_a_workload_without_history_is_new() -> None:
    old = _history(8)
    fresh = {h: s for h, s in _history(8, replicas=10.0).items() if h >= _hour(6, 0)}
    anomaly = explain(TEAM, "t", _hour(7, 2), {"a/old": old, "a/new": fresh}, CFG)
    assert anomaly is not None
    assert anomaly.drivers[0].member == "a/new"
    assert anomaly.drivers[0].cause is Cause.NEW


def test_one_runaway_raises_one_anomaly_not_three() -> None:
    chat = Member("search/chat", "search", "llama", _history(8, change={"replicas": 6.0}))
    embed = Member("search/embed", "search", None, _history(8, replicas=1.0))
    found = detect([chat, embed], _hour(7, 2), CFG)
    assert [(a.scope, a.group) for a in found] == [(WORKLOAD, "search/chat")]
    assert detect([chat, embed], _hour(7, 3), CFG) == []  # the hour after: normal again


def test_many_small_rises_together_raise_the_team() -> None:
    # Each workload spends 30 % more: within its own day-to-day noise (+-15 %), so no
    # workload is anomalous; their noise cancels in the team's sum, whose rise stands out.
    members = []
    for i in range(12):
        history = _history(8, change={"replicas": 1.3})
        noisy = {
            h: (s if (h % 24) != _hour(0, 2) % 24 or h == _hour(7, 2) else
                HourSpend(s.hour, s.usd * (1 + 0.15 * (((h // 24) + i) % 3 - 1)), s.gpu_hours,
                          s.replica_hours, s.desired_replica_hours, s.tokens, s.observed_hours,
                          s.pools))
            for h, s in history.items()
        }  # fmt: skip
        members.append(Member(f"ns/w{i}", "search", "llama" if i < 6 else None, noisy))
    cfg = CFG.model_copy(update={"relative_floor": 0.05})
    found = detect(members, _hour(7, 2), cfg)
    scopes = {(a.scope, a.group) for a in found}
    assert (TEAM, "search") in scopes
    assert (MODEL, "llama") in scopes
    assert not any(a.scope == WORKLOAD for a in found)


def test_disabled_detects_nothing() -> None:
    chat = Member("a/chat", "t", None, _history(8, change={"replicas": 6.0}))
    assert detect([chat], _hour(7, 2), CFG.model_copy(update={"enabled": False})) == []


def test_a_group_rise_right_after_a_workloads_own_anomaly_is_still_raised() -> None:
    # One workload's runaway at 02:00 is raised as its own; from 03:00 twenty others
    # each rise a little: their team's rise is news, not the tail of the runaway.
    members = [Member("ns/a", "search", None, _history(8, change={"replicas": 10.0}))]
    for i in range(20):
        kept: tuple[HourSpend, ...] = ()
        for d in range(8):
            for h in range(24):
                start = T0 + timedelta(days=d, hours=h)
                usd = 2.0 + (0.9 if d == 7 and 3 <= h <= 8 else 0.0)
                kept = record(kept, Interval(start, start + timedelta(hours=1), {"l4": usd},
                                             1.0, 1))  # fmt: skip
        members.append(Member(f"ns/w{i}", "search", None, with_hours(kept)))
    cfg = CFG.model_copy(update={"relative_floor": 0.05})  # each +$0.90 stays under $1
    raised = [(a.scope, a.group, (a.hour - _hour(7, 0))) for h in range(24)
              for a in detect(members, _hour(7, h), cfg)]  # fmt: skip
    assert (WORKLOAD, "ns/a", 2) in raised
    assert (TEAM, "search", 3) in raised


def test_an_escalation_is_measured_against_the_whole_episode() -> None:
    values = _flat(10.0, days=10)
    values[_hour(8, 0)] = 110.0  # +100
    for h in range(1, 29):
        values[_hour(8, h)] = 50.0  # +40 for 28 hours
    values[_hour(8, 29)] = 95.0  # +85: less than twice 100
    raised = [h for h in range(30) if Judge(values, CFG).raised(_hour(8, h))]
    assert raised == [0]


def test_an_event_names_only_its_own_namespaces_workloads() -> None:
    mine = _history(8, change={"replicas": 4.0})
    theirs = _history(8, change={"replicas": 3.0})
    anomaly = explain(MODEL, "llama", _hour(7, 2), {"team-a/chat": mine,
                      "team-b/secret-eval": theirs}, CFG)  # fmt: skip
    assert anomaly is not None
    assert "team-b/secret-eval" in anomaly.message  # the platform's alert: all of them
    event = anomaly.message_for("team-a")
    assert "team-a/chat" in event and "secret" not in event
    assert "+$16.00 in 1 other namespace" in event


def test_info_only_when_the_cost_per_token_is_as_usual() -> None:
    usual = [(d, 0, "a100", 4.0, 1.0, 1.0, 1.0, 100.0) for d in range(7)]
    followed = _rows([*usual, (7, 0, "a100", 16.0, 4.0, 4.0, 4.0, 400.0)])
    dearer = _rows([*usual, (7, 0, "a100", 16.0, 4.0, 4.0, 4.0, 125.0 * 1.0 + 0.0)])
    for history, severity in ((followed, "info"), (dearer, "warning")):
        anomaly = explain(WORKLOAD, "ns/w", _hour(7, 0), {"ns/w": history}, CFG)
        assert anomaly is not None
        assert anomaly.severity == severity


def test_the_autoscalers_figure_counts_only_when_known_for_most_of_the_hour() -> None:
    start = T0
    half = record((), Interval(start, start + timedelta(minutes=30), {"a": 1.0}, 1.0, 4, None))
    both = record(half, Interval(start + timedelta(minutes=30), start + timedelta(hours=1),
                                 {"a": 1.0}, 1.0, 4, 2))  # fmt: skip
    (hour,) = both
    assert hour.replicas == 4 and hour.desired is None  # known for half the hour only
    full = record((), Interval(start, start + timedelta(hours=1), {"a": 1.0}, 1.0, 4, 2))
    (kept,) = from_status(to_status(full, start + timedelta(hours=1)), start + timedelta(hours=1))
    assert kept.desired == 2
    (unknown,) = from_status(to_status(both, start + timedelta(hours=1)),
                             start + timedelta(hours=1))  # fmt: skip
    assert unknown.desired is None


def test_status_is_bounded_in_time_and_trusts_no_hour_outside_it() -> None:
    now = T0 + timedelta(days=20)
    gap: tuple[HourSpend, ...] = record((), Interval(T0, T0 + timedelta(hours=1), {"a": 1.0}))
    gap = record(gap, Interval(now - timedelta(hours=1), now, {"a": 1.0}))
    assert [h.hour for h in gap] == [epoch_hour(now) - 1]  # the old hour fell out by time
    wire = to_status(gap, now)
    assert len(wire.usd) == 1
    far = wire.model_copy(update={"first_hour": "2999-01-01T00:00Z"})
    assert from_status(far, now) == ()
    impossible = wire.model_copy(update={"first_hour": "2026-02-30T10:00Z"})
    assert from_status(impossible, now) == ()


def test_absurd_counters_are_capped_not_summed_to_infinity() -> None:
    kept: tuple[HourSpend, ...] = ()
    for m in range(60):
        start = T0 + timedelta(minutes=m)
        kept = record(kept, Interval(start, start + timedelta(minutes=1), {"a": 1.0}, 1.0, 1,
                                     None, 1e305))  # fmt: skip
    (hour,) = kept
    assert hour.tokens == pytest.approx(MAX_TOKENS_PER_SECOND * 3600)
    assert all(math.isfinite(x) for x in to_status(kept, T0 + timedelta(hours=1)).tokens)
