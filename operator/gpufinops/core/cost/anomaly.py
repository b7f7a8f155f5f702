"""Spend anomalies: an hour whose spend departs from its own seasonal pattern, and why.

GPU spend follows demand, and demand follows the day: a fixed threshold either
pages at every evening peak or sleeps through a runaway at 3 a.m. So each hour
is compared with the same hour of the past days. The baseline is their median
and the scale their median absolute deviation (x 1.4826, a standard deviation
for normal data): both robust, so yesterday's anomaly moves neither. The scale is
floored at a fraction of the median, so a perfectly flat history does not turn a
cent more into an anomaly, and an excess below ``minExcessUSDPerHour`` is never one.

Workloads, teams and models are judged alike, on the sum of their members'
hours. An anomaly is raised when it starts (an anomalous hour after a normal
one), so a runaway that lasts all night pages once. Its explanation splits the
excess over the members that spent more than usual, each over its pools, and
names what rose: replicas with no more tokens served (replicas without demand),
tokens (demand), GPU-hours per replica, or the price of the same GPU-hours (a
move to dearer pools); a member without history is new.

Hours are UTC epoch hours: the same hour of yesterday is 24 hours earlier even
across a daylight-saving change (a local peak then sits an hour off for a few
days, which the median absorbs).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import ValidationError

from gpufinops.api.status import SpendHistory
from gpufinops.config.model import AnomalyConfig

HOUR_SECONDS = 3600.0
RETENTION_HOURS = 8 * 24
"""Hours of history kept per workload: a week of baselines plus the day being judged."""
MAD_TO_SIGMA = 1.4826
WORKLOAD, TEAM, MODEL = "workload", "team", "model"


def epoch_hour(t: datetime) -> int:
    """The UTC hour containing ``t`` (hours since 1970)."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: pass an aware time (e.g. UTC)")
    return math.floor(t.timestamp() / HOUR_SECONDS)


def hour_label(hour: int) -> str:
    """``2026-12-07T02:00Z``: how an hour is written in status and messages."""
    return datetime.fromtimestamp(hour * HOUR_SECONDS, UTC).strftime("%Y-%m-%dT%H:00Z")


def parse_hour(text: str) -> int:
    """The inverse of ``hour_label``."""
    return epoch_hour(datetime.strptime(text, "%Y-%m-%dT%H:00Z").replace(tzinfo=UTC))


@dataclass(frozen=True)
class HourSpend:
    """What one workload spent and ran in one hour (the part of it observed)."""

    hour: int
    usd: float = 0.0
    gpu_hours: float = 0.0
    replica_hours: float = 0.0
    desired_replica_hours: float | None = None
    """Replica-hours the autoscaler asked for, over ``desired_hours`` (None: not known)."""
    tokens: float = 0.0
    """Tokens served (prompt + generated); 0 where the engine exposes no counter."""
    observed_hours: float = 0.0
    """How much of the hour these figures cover (1 once it is over and accounted)."""
    pools: tuple[tuple[str, float], ...] = ()
    """USD by node pool, largest first."""
    desired_hours: float | None = None
    """The part of the observed hours the autoscaler's figure covers (None: all of it)."""

    @property
    def replicas(self) -> float:
        """Mean replicas over the observed part of the hour."""
        return self.replica_hours / self.observed_hours if self.observed_hours > 0 else 0.0

    @property
    def desired(self) -> float | None:
        """Mean replicas the autoscaler asked for, when known for 90 % of the hour
        observed: a figure for part of it would compare with replicas for all of it."""
        covered = self.observed_hours if self.desired_hours is None else self.desired_hours
        if self.desired_replica_hours is None or covered < 0.9 * self.observed_hours:
            return None
        return self.desired_replica_hours / covered if covered > 0 else None

    def plus(self, other: HourSpend) -> HourSpend:
        by_pool = dict(self.pools)
        for pool, usd in other.pools:
            by_pool[pool] = by_pool.get(pool, 0.0) + usd
        desired = (
            None
            if self.desired_replica_hours is None and other.desired_replica_hours is None
            else (self.desired_replica_hours or 0.0) + (other.desired_replica_hours or 0.0)
        )
        return HourSpend(
            self.hour,
            self.usd + other.usd,
            self.gpu_hours + other.gpu_hours,
            self.replica_hours + other.replica_hours,
            desired,
            self.tokens + other.tokens,
            min(1.0, self.observed_hours + other.observed_hours),
            _largest_first(by_pool),
            None if desired is None else self._desired_hours() + other._desired_hours(),
        )

    def _desired_hours(self) -> float:
        if self.desired_replica_hours is None:
            return 0.0
        return self.observed_hours if self.desired_hours is None else self.desired_hours


def _largest_first(by_pool: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(by_pool.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class Interval:
    """One accounting interval of one workload, as the cost pass saw it."""

    start: datetime
    end: datetime
    usd_by_pool: Mapping[str, float] = field(default_factory=dict)
    gpu_hours: float = 0.0
    replicas: float = 0.0
    """Replicas running at the interval's end (held over it, as the rightsizing does)."""
    desired_replicas: float | None = None
    tokens_per_second: float | None = None


MAX_TOKENS_PER_SECOND = 1e9
"""Far above any fleet's rate: a tenant's counter claiming more is not believed (it
would otherwise overflow an hour's sum)."""
MAX_USD_PER_HOUR = 1e9


def _sane(value: float | None, bound: float) -> float:
    """A figure from outside (a counter, a price) as recorded: finite, 0 to ``bound``."""
    if value is None or not math.isfinite(value) or value < 0:
        return 0.0
    return min(value, bound)


def record(
    history: Sequence[HourSpend], interval: Interval, keep: int = RETENTION_HOURS
) -> tuple[HourSpend, ...]:
    """``history`` with ``interval`` added, cut at hour boundaries in proportion to time
    (spend accrues evenly over an interval), keeping the ``keep`` hours up to the
    newest: older ones, and any after a gap that far back, are dropped by time."""
    seconds = (interval.end - interval.start).total_seconds()
    if seconds <= 0:
        return tuple(history)
    by_hour = {h.hour: h for h in history}
    first, last = epoch_hour(interval.start), epoch_hour(interval.end - _TICK)
    if last - first > keep:  # a long outage: older hours would be dropped anyway
        first = last - keep
    start_s, end_s = interval.start.timestamp(), interval.end.timestamp()
    tokens = _sane(interval.tokens_per_second, MAX_TOKENS_PER_SECOND) * seconds
    bound = MAX_USD_PER_HOUR * seconds / HOUR_SECONDS
    usd_by_pool = {p: _sane(v, bound) for p, v in interval.usd_by_pool.items()}
    gpu_hours = _sane(interval.gpu_hours, bound)
    replicas = _sane(interval.replicas, 1e6)
    desired = None if interval.desired_replicas is None else _sane(interval.desired_replicas, 1e6)
    for hour in range(first, last + 1):
        a = max(start_s, hour * HOUR_SECONDS)
        b = min(end_s, (hour + 1) * HOUR_SECONDS)
        if b <= a:
            continue
        share, hours = (b - a) / seconds, (b - a) / HOUR_SECONDS
        part = HourSpend(
            hour,
            sum(usd_by_pool.values()) * share,
            gpu_hours * share,
            replicas * hours,
            desired * hours if desired is not None else None,
            tokens * share,
            hours,
            _largest_first({p: usd * share for p, usd in usd_by_pool.items() if usd}),
        )
        before = by_hour.get(hour)
        by_hour[hour] = before.plus(part) if before is not None else part
    newest = max(by_hour)
    return tuple(by_hour[h] for h in sorted(by_hour) if h > newest - keep)


def hour_pieces(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at UTC hour boundaries: what a long interval (after an
    outage) is priced in, piece by piece, so each hour gets what was held in it."""
    out = []
    a = start
    while a < end:
        boundary = datetime.fromtimestamp((epoch_hour(a) + 1) * HOUR_SECONDS, UTC)
        b = min(boundary, end)
        out.append((a, b))
        a = b
    return out


_TICK = datetime.resolution


@dataclass(frozen=True)
class Baseline:
    median: float
    scale: float
    days: int


def baseline(values: Mapping[int, float], hour: int, cfg: AnomalyConfig) -> Baseline | None:
    """The same hour of the past ``lookbackDays`` days that were observed; None with
    fewer than ``minDays`` of them."""
    past = [values[h] for h in _same_hours(hour, cfg) if h in values]
    if len(past) < cfg.min_days:
        return None
    median = statistics.median(past)
    mad = statistics.median(abs(v - median) for v in past)
    return Baseline(median, max(MAD_TO_SIGMA * mad, cfg.relative_floor * abs(median)), len(past))


def _same_hours(hour: int, cfg: AnomalyConfig) -> list[int]:
    return [hour - 24 * d for d in range(1, cfg.lookback_days + 1)]


def excess_of(values: Mapping[int, float], hour: int, cfg: AnomalyConfig) -> float | None:
    """How much more than its baseline ``hour`` spent, when that is an anomaly (None:
    not one, or not judged)."""
    if hour not in values:
        return None
    base = baseline(values, hour, cfg)
    if base is None:
        return None
    excess = values[hour] - base.median
    if excess >= cfg.min_excess_usd_per_hour and excess > cfg.threshold * base.scale:
        return excess
    return None


def is_anomalous(values: Mapping[int, float], hour: int, cfg: AnomalyConfig) -> bool:
    """Whether ``hour`` spent more than its baseline allows (unjudged hours are not)."""
    return excess_of(values, hour, cfg) is not None


EPISODE_GAP_HOURS = 1
"""Normal hours an anomaly may pause for and still be the same one: spend hovering at
the threshold pages once, not at every crossing."""
ESCALATION = 2.0
"""An anomaly under way is raised again when its excess reaches this many times the
largest so far: a runaway on top of a demand surge is news, another hour of it is not."""
EPISODE_LOOKBACK_HOURS = RETENTION_HOURS
"""How far back an episode under way is followed: the whole history kept."""


class Judge:
    """One group's hours judged once each (a week's replay judges each hour many times).

    ``quiet(hour)`` says an anomalous hour was not raised for this group because
    workloads raised it themselves (``detect_hours``): such an hour does not open or
    extend the group's own episode, so a group-wide rise right after is still news."""

    def __init__(
        self,
        values: Mapping[int, float],
        cfg: AnomalyConfig,
        quiet: Callable[[int], bool] | None = None,
    ) -> None:
        self.values, self.cfg, self.quiet = values, cfg, quiet
        self._excess: dict[int, float | None] = {}

    def excess(self, hour: int) -> float | None:
        if hour not in self._excess:
            self._excess[hour] = excess_of(self.values, hour, self.cfg)
        return self._excess[hour]

    def _episode(self, hour: int) -> float | None:
        """The hour's excess as far as this group's episodes go (None: normal)."""
        e = self.excess(hour)
        if e is not None and self.quiet is not None and self.quiet(hour):
            return None
        return e

    def raised(self, hour: int) -> bool:
        """Whether an anomaly is raised at ``hour``: it is anomalous, and no anomaly is
        under way (more than ``EPISODE_GAP_HOURS`` normal hours since the last anomalous
        one) or the one under way has escalated (``ESCALATION``)."""
        now = self.excess(hour)
        if now is None:
            return False
        before: list[float] = []
        normal = 0
        for h in range(hour - 1, hour - EPISODE_LOOKBACK_HOURS - 1, -1):
            if h not in self.values:
                break  # before the history: nothing was under way that it shows
            e = self._episode(h)
            if e is not None:
                before.append(e)
                normal = 0
            else:
                normal += 1
                if normal > EPISODE_GAP_HOURS:
                    break
        return not before or now >= ESCALATION * max(before)


def totals(members: Iterable[Mapping[int, HourSpend]]) -> dict[int, float]:
    """A group's spend per hour: its members' summed, over the hours any of them saw."""
    out: dict[int, float] = {}
    for member in members:
        for hour, spent in member.items():
            out[hour] = out.get(hour, 0.0) + spent.usd
    return out


class Cause(StrEnum):
    REPLICAS = "ReplicasWithoutDemand"
    DEMAND = "Demand"
    LARGER_REPLICAS = "GPUHoursPerReplica"
    PRICE = "Price"
    NEW = "NewWorkload"
    OTHER = "Other"


RISE = 1.2
"""A figure counts as risen above 1.2 x its usual value."""


@dataclass(frozen=True)
class Driver:
    """One member's share of an anomaly, and what rose."""

    member: str
    usd: float
    expected_usd: float
    cause: Cause
    replicas: float
    expected_replicas: float | None
    desired: float | None
    tokens: float
    expected_tokens: float | None
    gpu_hours: float
    expected_gpu_hours: float | None
    pools: tuple[tuple[str, float], ...]
    """Excess USD by pool over the pool's usual, largest first (rises only)."""

    @property
    def excess(self) -> float:
        return self.usd - self.expected_usd

    def describe(self) -> str:
        parts = [f"{self.member} +${self.excess:,.2f}"]
        if self.cause is Cause.NEW:
            parts.append(f"new, {_num(self.replicas)} replicas")
        elif self.expected_replicas is not None:
            ran = f"{_num(self.replicas)} replicas (usually {_num(self.expected_replicas)}"
            if self.desired is not None:
                ran += f"; the autoscaler wanted {_num(self.desired)}"
            parts.append(ran + ")")
        if self.expected_tokens is not None and (self.tokens > 0 or self.expected_tokens > 0):
            if self.expected_tokens > 0:
                parts.append(f"tokens {self.tokens / self.expected_tokens:.1f}x usual")
            else:
                parts.append(f"{_num(self.tokens)} tokens, usually none")
        if self.cause is Cause.LARGER_REPLICAS and self.expected_gpu_hours:
            parts.append(f"GPU-hours {self.gpu_hours / self.expected_gpu_hours:.1f}x usual")
        if self.cause is Cause.PRICE and self.expected_gpu_hours:
            now = self.usd / self.gpu_hours if self.gpu_hours else 0.0
            usual = self.expected_usd / self.expected_gpu_hours
            parts.append(f"${now:,.2f} per GPU-hour, usually ${usual:,.2f}")
        if self.pools:
            on = ", ".join(f"{p} +${usd:,.2f}" for p, usd in self.pools[:2])
            parts.append(f"on {on}")
        return f"{parts[0]}: {self.cause.value}, " + ", ".join(parts[1:])


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


@dataclass(frozen=True)
class SpendAnomaly:
    """A group's hour that spent more than its baseline allows, and who drove it."""

    scope: str
    """``workload``, ``team`` or ``model``."""
    group: str
    """``namespace/name`` for a workload; the team's or model's name otherwise."""
    hour: int
    usd: float
    expected_usd: float
    scale: float
    drivers: tuple[Driver, ...]
    """Members that spent more than usual, the largest excess first."""

    @property
    def excess(self) -> float:
        return self.usd - self.expected_usd

    @property
    def severity(self) -> str:
        """``info`` when spend followed demand: the top driver's cause is Demand and its
        cost per token rose by no more than ``RISE``. ``warning`` otherwise: waste is
        what someone must act on."""
        if not self.drivers or self.drivers[0].cause is not Cause.DEMAND:
            return "warning"
        top = self.drivers[0]
        if not top.expected_tokens or top.tokens <= 0 or top.expected_usd <= 0:
            return "warning"
        unit = (top.usd / top.tokens) / (top.expected_usd / top.expected_tokens)
        return "info" if unit <= RISE else "warning"

    @property
    def key(self) -> str:
        """What an alert is deduplicated by: one per group and start."""
        return f"anomaly/{self.scope}/{self.group}/{hour_label(self.hour)}"

    @property
    def message(self) -> str:
        """For the alert endpoints (the platform's): every driver named."""
        return self.message_for(None)

    def message_for(self, namespace: str | None) -> str:
        """With ``namespace``, for an Event there: drivers in other namespaces (a team's
        or model's may span tenants) are summed, not named."""
        ratio = f", {self.usd / self.expected_usd:.1f}x" if self.expected_usd > 0 else ""
        head = (
            f"{self.scope} {self.group} spent ${self.usd:,.2f} in the hour from "
            f"{hour_label(self.hour)}, usually ${self.expected_usd:,.2f} "
            f"(+${self.excess:,.2f}{ratio})"
        )
        if not self.drivers:
            return head
        named = [
            d for d in self.drivers if namespace is None or d.member.split("/", 1)[0] == namespace
        ]
        others = [d for d in self.drivers if d not in named]
        shown = "; ".join(d.describe() for d in named[:3])
        if self.scope == WORKLOAD:
            shown = shown.split(": ", 1)[-1]
        parts = [shown] if shown else []
        if len(named) > 3:
            parts.append(f"and {len(named) - 3} more")
        if others:
            spaces = len({d.member.split("/", 1)[0] for d in others})
            where = "namespace" if spaces == 1 else "namespaces"
            parts.append(f"+${sum(d.excess for d in others):,.2f} in {spaces} other {where}")
        return f"{head}. " + "; ".join(parts)


def _median_of(history: Mapping[int, HourSpend], hours: Iterable[int], what: str) -> float | None:
    values = [getattr(history[h], what) for h in hours if h in history]
    return statistics.median(values) if values else None


def _driver(
    name: str,
    history: Mapping[int, HourSpend],
    hour: int,
    judged: Sequence[int],
    cfg: AnomalyConfig,
) -> Driver:
    """``judged``: the past hours the group's baseline took; a member absent from one
    spent nothing in it (so a new workload's usual is near $0, as in the group's)."""
    now = history[hour]
    past = [h for h in _same_hours(hour, cfg) if h in history]
    usual = statistics.median([history[h].usd if h in history else 0.0 for h in judged] or [0])
    replicas = _median_of(history, past, "replicas")
    tokens = _median_of(history, past, "tokens")
    gpu_hours = _median_of(history, past, "gpu_hours")
    pools_usual: dict[str, float] = {}
    for pool, _ in now.pools:
        values = [dict(history[h].pools).get(pool, 0.0) for h in past]
        pools_usual[pool] = statistics.median(values) if values else 0.0
    rises = {p: usd - pools_usual.get(p, 0.0) for p, usd in now.pools}
    pools = _largest_first({p: x for p, x in rises.items() if x > 0})
    return Driver(
        name, now.usd, usual, _cause(now, past, replicas, tokens, gpu_hours, usual, cfg),
        now.replicas, replicas, now.desired, now.tokens, tokens, now.gpu_hours, gpu_hours,
        pools,
    )  # fmt: skip


def _ratio(now: float, usual: float | None) -> float:
    if usual is None:
        return 1.0
    if usual <= 0:
        return math.inf if now > 0 else 1.0
    return now / usual


def _cause(
    now: HourSpend,
    past: Sequence[int],
    replicas: float | None,
    tokens: float | None,
    gpu_hours: float | None,
    usual_usd: float,
    cfg: AnomalyConfig,
) -> Cause:
    """What rose most: the price of a GPU-hour, GPU-hours per replica, or replicas (with
    the tokens served, or the autoscaler asking for them: demand; else without it)."""
    if len(past) < cfg.min_days:
        return Cause.NEW
    r, t = _ratio(now.replicas, replicas), _ratio(now.tokens, tokens)
    g, u = _ratio(now.gpu_hours, gpu_hours), _ratio(now.usd, usual_usd)
    finite = math.inf not in (r, g, u) and 0.0 not in (r, g)
    price = u / g if finite else 1.0
    per_replica = g / r if finite else 1.0
    if price > RISE and price >= max(per_replica, r):
        return Cause.PRICE
    if per_replica > RISE and per_replica >= r:
        return Cause.LARGER_REPLICAS
    counted = tokens is not None and (now.tokens > 0 or (tokens or 0.0) > 0)
    asked = now.desired is not None and now.desired >= 0.9 * now.replicas
    if r > RISE or g > RISE:
        if counted and t > RISE and (t >= 1 + 0.5 * (r - 1) or asked):
            return Cause.DEMAND  # tokens rose at least half as much, or were asked for
        return Cause.REPLICAS
    if counted and t > RISE:
        return Cause.DEMAND
    return Cause.OTHER


def explain(
    scope: str,
    group: str,
    hour: int,
    members: Mapping[str, Mapping[int, HourSpend]],
    cfg: AnomalyConfig,
) -> SpendAnomaly | None:
    """The anomaly of ``group`` at ``hour`` with its drivers; None when the hour is not
    anomalous."""
    values = totals(members.values())
    if not is_anomalous(values, hour, cfg):
        return None
    base = baseline(values, hour, cfg)
    assert base is not None  # is_anomalous judged it
    judged = [h for h in _same_hours(hour, cfg) if h in values]
    drivers = [
        _driver(name, history, hour, judged, cfg)
        for name, history in sorted(members.items())
        if hour in history
    ]
    rising = sorted((d for d in drivers if d.excess > 0), key=lambda d: (-d.excess, d.member))
    return SpendAnomaly(scope, group, hour, values[hour], base.median, base.scale, tuple(rising))


@dataclass(frozen=True)
class Member:
    """A workload, with the groups it is judged in."""

    name: str
    """``namespace/name``."""
    team: str
    model: str | None
    history: Mapping[int, HourSpend]


def groups_of(
    members: Iterable[Member],
) -> dict[tuple[str, str], dict[str, Mapping[int, HourSpend]]]:
    """Every workload, team and model, with its members' histories."""
    out: dict[tuple[str, str], dict[str, Mapping[int, HourSpend]]] = {}
    for m in members:
        out.setdefault((WORKLOAD, m.name), {})[m.name] = m.history
        out.setdefault((TEAM, m.team), {})[m.name] = m.history
        if m.model:
            out.setdefault((MODEL, m.model), {})[m.name] = m.history
    return out


def detect(members: Iterable[Member], hour: int, cfg: AnomalyConfig) -> list[SpendAnomaly]:
    """The anomalies that start at ``hour`` (a completed hour), of every workload, team
    and model, in scope then group order."""
    return detect_hours(members, [hour], cfg)


def detect_hours(
    members: Iterable[Member], hours: Iterable[int], cfg: AnomalyConfig
) -> list[SpendAnomaly]:
    """The anomalies that start at each of ``hours``, hour by hour: what the operator
    raises after an outage, and what the report lists for the past week.

    A team's or model's anomaly is not raised when workloads anomalous themselves at
    that hour (started now or earlier) account for half its excess or more: one
    runaway pages once, with its team and model as labels, not three times. A group
    anomaly is raised for what no workload shows alone (many small rises together).
    """
    if not cfg.enabled:
        return []
    groups = sorted(groups_of(members).items())
    workloads = {
        group: Judge(totals(histories.values()), cfg)
        for (scope, group), histories in groups
        if scope == WORKLOAD
    }
    explained: dict[tuple[str, str, int], SpendAnomaly | None] = {}
    by_key = dict(groups)

    def explained_at(scope: str, group: str, hour: int) -> SpendAnomaly | None:
        key = (scope, group, hour)
        if key not in explained:
            explained[key] = explain(scope, group, hour, by_key[(scope, group)], cfg)
        return explained[key]

    def covered(scope: str, group: str, hour: int) -> bool:
        """Whether workloads anomalous on their own at ``hour`` account for half the
        group's excess or more."""
        anomaly = explained_at(scope, group, hour)
        if anomaly is None:
            return False
        own = sum(
            d.excess
            for d in anomaly.drivers
            if d.member in workloads and workloads[d.member].excess(hour) is not None
        )
        return own >= 0.5 * anomaly.excess

    def quiet_for(scope: str, group: str) -> Callable[[int], bool]:
        return lambda hour: covered(scope, group, hour)

    judges: dict[tuple[str, str], Judge] = {}
    for (scope, group), histories in groups:
        judges[(scope, group)] = (
            workloads[group]
            if scope == WORKLOAD
            else Judge(totals(histories.values()), cfg, quiet_for(scope, group))
        )
    found = []
    for hour in hours:
        for scope, group in judges:
            if not judges[(scope, group)].raised(hour):
                continue
            if scope != WORKLOAD and covered(scope, group, hour):
                continue
            anomaly = explained_at(scope, group, hour)
            if anomaly is not None:
                found.append(anomaly)
    return found


def with_hours(history: Iterable[HourSpend]) -> dict[int, HourSpend]:
    return {h.hour: h for h in history}


MAX_POOLS = 8


def to_status(history: Sequence[HourSpend], recorded_until: datetime | None = None) -> SpendHistory:
    """``status.spendHistory``: the hours as lists from the first one kept, hours not
    observed as zeros (bounded: the last 8 days, the 8 pools spent most on), and the
    instant they are recorded up to."""
    if not history:
        return SpendHistory(recorded_until=recorded_until)
    last = history[-1].hour
    first = max(history[0].hour, last - RETENTION_HOURS + 1)
    history = [h for h in history if h.hour >= first]
    span = range(first, last + 1)
    by_hour = with_hours(history)
    empty = HourSpend(0)
    hours = [by_hour.get(h, empty) for h in span]
    spent: dict[str, float] = {}
    for h in history:
        for pool, usd in h.pools:
            spent[pool] = spent.get(pool, 0.0) + usd
    pools = [p for p, _ in _largest_first(spent)[:MAX_POOLS]]
    # The autoscaler's figure, as a mean over the whole observed hour, only where it is
    # known for most of it; 0 (read back as unknown) elsewhere.
    desired = [h.desired * h.observed_hours if h.desired is not None else None for h in hours]
    return SpendHistory(
        first_hour=hour_label(first),
        recorded_until=recorded_until,
        observed_hours=[_r(h.observed_hours, 4) for h in hours],
        usd=[_r(h.usd, 4) for h in hours],
        gpu_hours=[_r(h.gpu_hours, 4) for h in hours],
        replica_hours=[_r(h.replica_hours, 3) for h in hours],
        desired_replica_hours=(
            [_r(d or 0.0, 3) for d in desired] if any(d is not None for d in desired) else None
        ),
        tokens=[_r(h.tokens, 0) for h in hours],
        usd_by_pool={p: [_r(dict(h.pools).get(p, 0.0), 4) for h in hours] for p in pools},
    )


def _r(value: float, digits: int) -> float:
    return round(value, digits) if math.isfinite(value) else 0.0


def from_status(kept: SpendHistory, now: datetime) -> tuple[HourSpend, ...]:
    """The hours ``status.spendHistory`` holds, those of the 8 days up to ``now`` only;
    none when it is not what accounting writes (lists of unequal length, negative or
    non-finite values, an hour that does not exist)."""
    if kept.first_hour is None:
        return ()
    try:
        first = parse_hour(kept.first_hour)
    except ValueError:
        return ()
    latest = epoch_hour(now)
    n = len(kept.usd)
    lists = [kept.observed_hours, kept.usd, kept.gpu_hours, kept.replica_hours, kept.tokens,
             *kept.usd_by_pool.values()]  # fmt: skip
    if kept.desired_replica_hours is not None:
        lists.append(kept.desired_replica_hours)
    if any(len(v) != n for v in lists):
        return ()
    if not all(math.isfinite(x) and x >= 0 for v in lists for x in v):
        return ()
    desired = kept.desired_replica_hours
    return tuple(
        HourSpend(
            first + i,
            kept.usd[i],
            kept.gpu_hours[i],
            kept.replica_hours[i],
            desired[i] if desired is not None and desired[i] > 0 else None,
            kept.tokens[i],
            min(kept.observed_hours[i], 1.0),
            _largest_first({p: v[i] for p, v in kept.usd_by_pool.items() if v[i] > 0}),
        )
        for i in range(n)
        if kept.observed_hours[i] > 0 and latest - RETENTION_HOURS < first + i <= latest
    )


def read_history(raw: object, now: datetime) -> tuple[tuple[HourSpend, ...], datetime | None]:
    """``status.spendHistory`` as written by accounting: its hours and the instant they
    are recorded up to; none, and None, for anything else (no or a future
    ``recordedUntil``, malformed lists). The one reader: the operator records afresh
    over what it refuses, and the report judges only what the operator would."""
    if not isinstance(raw, Mapping) or not raw:
        return (), None
    try:
        kept = SpendHistory.model_validate(raw)
        hours = from_status(kept, now)
    except (ValidationError, ValueError):
        return (), None
    until = kept.recorded_until
    if not hours or until is None or until.tzinfo is None or until > now:
        return (), None
    return hours, until
